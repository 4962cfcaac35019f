#!/bin/sh
# Unpack the runtime's two wheels, which cpb adds to the image's artifacts
# (the cpb_runtime wheel it makes, and nats-py's from the artifact cache),
# and write the launchers cp-majordomo and cp-worker. No pip, no network:
# a pure-Python wheel is a zip file.
set -eu
if ! command -v python3 >/dev/null 2>&1; then
    echo "computepods-runtime: python3 is not in this image, and the ComputePods runtime needs it:" \
         "add python3 to the base image (rootfs: {debootstrap: {include: [python3]}}, or packages: [python3])" >&2
    exit 1
fi
lib=/opt/computepods/lib
mkdir -p "$lib"
for pattern in nats_py cpb_runtime; do
    set -- /tmp/artifacts/"$pattern"-*.whl
    if [ ! -f "$1" ]; then
        echo "computepods-runtime: no $pattern wheel in /tmp/artifacts (cpb adds it to the image's artifacts)" >&2
        exit 1
    fi
    python3 -m zipfile -e "$1" "$lib"
done
for role in majordomo worker; do
    # runpy rather than PYTHONPATH: the tasks a worker starts inherit its
    # environment, and must not see the runtime's packages.
    cat > "/usr/local/bin/cp-$role" <<LAUNCHER
#!/usr/bin/env python3
import runpy, sys
sys.path.insert(0, "$lib")
runpy.run_module("cpb_runtime.$role", run_name="__main__", alter_sys=True)
LAUNCHER
    chmod 0755 "/usr/local/bin/cp-$role"
done
python3 -c "import sys; sys.path.insert(0, '$lib'); import nats, cpb_runtime.worker, cpb_runtime.majordomo" || {
    echo "computepods-runtime: the runtime does not import with this image's $(python3 --version 2>&1) (3.10 or newer is needed)" >&2
    exit 1
}
python3 -m compileall -q "$lib" >/dev/null
