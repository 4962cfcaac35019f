"""`cpb doctor`: is this machine able to build? Each check says how to fix it.

The container-start probe imports an empty image and runs a program that
does not exist in it: a working runtime gets as far as "not found", while a
sandbox without the right settings fails earlier, in setrlimit or cgroups.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cpb.adapters.cekit import cekit_version
from cpb.adapters.podman import PODMAN, sandbox_hint
from cpb.adapters.runner import CommandFailed, Runner

PROBE_IMAGE = "localhost/cpb-doctor/probe:latest"


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    required: bool = True


def run_checks(runner: Runner) -> list[Check]:
    checks = [_program("podman", "apt-get install podman"),
              _program("cekit", "pip install cekit"),
              _program("debootstrap", "apt-get install debootstrap (only for rootfs: debootstrap)",
                       required=False)]
    version = cekit_version(runner)
    checks.append(Check("cekit version", version != "unknown", version))
    if checks[0].ok:
        checks.append(_podman_info(runner))
        checks.append(_container_start(runner))
    return checks


def _program(name: str, fix: str, required: bool = True) -> Check:
    path = shutil.which(name)
    return Check(name, path is not None, path or f"not found; install it: {fix}", required)


def _podman_info(runner: Runner) -> Check:
    try:
        out = runner.run([PODMAN, "version", "--format", "{{.Client.Version}}"], timeout=60)
    except CommandFailed as exc:
        return Check("podman works", False, exc.tail(3))
    return Check("podman works", True, f"podman {out.strip()}")


def _container_start(runner: Runner) -> Check:
    with tempfile.TemporaryDirectory(prefix="cpb-doctor-") as folder:
        tar = Path(folder) / "empty.tar"
        with tarfile.open(tar, "w") as archive:
            info = tarfile.TarInfo("etc/cpb-doctor")
            archive.addfile(info, io.BytesIO(b""))
        try:
            runner.run([PODMAN, "import", "--quiet", str(tar), PROBE_IMAGE], timeout=120)
        except CommandFailed as exc:
            return Check("podman can store images", False, exc.tail(3))
    try:
        runner.run([PODMAN, "run", "--rm", "--network", "none", PROBE_IMAGE, "/cpb-probe"],
                   timeout=120)
        output = ""
    except CommandFailed as exc:
        output = exc.output
    finally:
        with contextlib.suppress(CommandFailed):
            runner.run([PODMAN, "rmi", "--force", PROBE_IMAGE], timeout=120)
    hint = sandbox_hint(output)
    if hint:
        return Check("containers start", False, hint)
    if "not found" in output or "no such file" in output.lower():
        return Check("containers start", True, "the runtime starts containers")
    return Check("containers start", False, output.strip().splitlines()[-1] if output
                 else "the probe ran a program that does not exist, and succeeded?")
