"""`cpb doctor`: is this machine able to build? Each check says how to fix it.

The container-start probe imports an empty image and runs a program that
does not exist in it: a working runtime gets as far as "not found", while a
sandbox without the right settings fails earlier, in setrlimit or cgroups.
"""

from __future__ import annotations

import contextlib
import io
import re
import shutil
import sys
import sysconfig
import tarfile
import tempfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from cpb.adapters.cekit import cekit_version
from cpb.adapters.podman import PODMAN, sandbox_hint
from cpb.adapters.runner import CommandFailed, Runner
from cpb.errors import EnvironmentProblem

PROBE_IMAGE = "localhost/cpb-doctor/probe:latest"


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    required: bool = True


def run_checks(runner: Runner) -> list[Check]:
    cekit = _program("cekit", "pip install cekit")
    checks = [_program("podman", "apt-get install podman"), cekit,
              _program("debootstrap", "apt-get install debootstrap (only for rootfs: debootstrap)",
                       required=False)]
    if cekit.ok:
        version = cekit_version(runner)
        checks.append(Check("cekit version", version != "unknown", version))
    else:
        checks[1] = _cekit_off_path(cekit)
    if checks[0].ok:
        checks.append(_podman_info(runner))
        checks.append(buildah_check(_buildah_version(runner)))
        checks.append(_container_start(runner))
    return checks


# buildah 1.35.0 (podman 5.0.1, 4.9.4) fixed CVE-2024-1753: a Containerfile's
# `RUN --mount=type=bind,from=IMAGE,source=LINK` could bind a host path read-write.
# Debian 12's buildah 1.28.2+ds1-3+deb12u1 has no backport (its changelog, read
# 2026-11-30, lists none). cpb itself never lets a project add a step to the
# Containerfile; this warns that nothing else stands behind that.
CVE_2024_1753_FIXED = (1, 35, 0)


def _buildah_version(runner: Runner) -> str | None:
    """The buildah that `podman build` (cekit's builder) links, else the buildah command's."""
    for args in ([PODMAN, "info", "--format", "{{.Host.BuildahVersion}}"],
                 ["buildah", "--version"]):
        try:
            out = runner.run(args, timeout=60)
        except (CommandFailed, EnvironmentProblem):
            continue
        found = re.search(r"\d+\.\d+(\.\d+)?", out)
        if found:
            return found.group(0)
    return None


def buildah_check(version: str | None) -> Check:
    name = "buildah and CVE-2024-1753"
    if version is None:
        return Check(name, False, "cannot tell the buildah version podman builds with",
                     required=False)
    parts = tuple(int(p) for p in version.split("."))
    fixed = ".".join(map(str, CVE_2024_1753_FIXED))
    if parts >= CVE_2024_1753_FIXED:
        return Check(name, True, f"buildah {version} (>= {fixed}: fixed)", required=False)
    return Check(name, False, f"podman builds with buildah {version}, older than {fixed}, which "
                 "fixed CVE-2024-1753 (a Containerfile's RUN --mount can reach the host; "
                 "Debian 12 has no backport); cpb keeps projects from adding Containerfile "
                 "steps, but upgrade podman/buildah where you can", required=False)


def _program(name: str, fix: str, required: bool = True) -> Check:
    path = shutil.which(name)
    return Check(name, path is not None, path or f"not found; install it: {fix}", required)


def _cekit_off_path(check: Check) -> Check:
    """cekit not on PATH, though perhaps installed for this Python (cpb runs the command)."""
    try:
        version = metadata.version("cekit")
    except metadata.PackageNotFoundError:
        return check
    scripts = sysconfig.get_path("scripts")
    return Check(check.name, False, f"not found on PATH, though cekit {version} is installed "
                 f"for {sys.executable}: add {scripts} to PATH", check.required)


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
