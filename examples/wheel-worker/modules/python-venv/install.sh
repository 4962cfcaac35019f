#!/bin/sh
# No index: the wheels were fetched and verified on the host by cpb.
set -eu
python3 -m venv /opt/venv
/opt/venv/bin/pip install --no-index --no-cache-dir --disable-pip-version-check /tmp/artifacts/*.whl
