"""Cekit adapter: its version (part of every input digest) and its build command."""

from __future__ import annotations

import functools
import os
import re
import sys
from pathlib import Path

from cpb.adapters.runner import CommandFailed, Runner

CEKIT = "cekit"
# Everything passed to `cekit build` that changes the image's bytes; it is
# part of the input digest so that changing a flag rebuilds.
BUILDER_FLAGS = ("podman", "--no-squash")


_DIST_INFO = re.compile(r"cekit-[^-]+\.dist-info", re.IGNORECASE)


@functools.cache
def cekit_dist_info() -> str | None:
    """The folder of cekit's installed metadata (its name carries the version),
    or None when cekit is not an installed Python distribution here.

    Found as importlib.metadata finds it (the first entry of sys.path that
    has it), without importing importlib.metadata: that import alone costs
    every `cpb plan` some 25 ms, and this is all cpb asks of it. An install
    this does not see (an .egg-info) falls back to importlib.metadata.
    """
    for entry in sys.path:
        try:
            names = sorted(os.listdir(entry or "."))
        except OSError:
            continue
        found = next((n for n in names if _DIST_INFO.fullmatch(n)), None)
        if found is not None:
            return os.path.join(entry or ".", found)
    from importlib import metadata

    try:
        path = getattr(metadata.distribution("cekit"), "_path", None)
    except metadata.PackageNotFoundError:
        return None
    return str(path) if path is not None else None


def cekit_version(runner: Runner) -> str:
    """cekit's version, without starting a process when it is importable.

    cekit stamps `io.cekit.version` into every image, so an upgrade changes
    every image: the version belongs in the input digest.
    """
    folder = cekit_dist_info()
    if folder is not None:
        try:
            with open(os.path.join(folder, "METADATA"), encoding="utf-8") as handle:
                for line in handle:
                    if line.startswith("Version:"):
                        return line.split(":", 1)[1].strip()
                    if not line.strip():
                        break  # the headers end at the first empty line
        except OSError:
            pass
        from importlib import metadata

        try:
            return metadata.version("cekit")
        except metadata.PackageNotFoundError:
            pass
    return _version_from_command(runner)


_asked: dict[int, str] = {}  # `cekit --version` is asked once per process


def _version_from_command(runner: Runner) -> str:
    if 0 not in _asked:
        try:
            out = runner.run([CEKIT, "--version"], timeout=60)
        except CommandFailed:
            return "unknown"
        found = re.search(r"\d+(\.\d+)+\S*", out)
        _asked[0] = found.group(0) if found else out.strip()
    return _asked[0]


def build_command(descriptor: Path, build_dir: Path, tags: list[str]) -> list[str]:
    args = [CEKIT, "--nocolor", "--descriptor", str(descriptor),
            "--work-dir", str(build_dir / "work"), "--target", str(build_dir / "target"),
            # a config file that does not exist: no user's ~/.cekit/config leaks in
            "--config", str(build_dir / "cekit.cfg"),
            "build", *BUILDER_FLAGS]
    for tag in tags:
        args += ["--tag", tag]
    return args
