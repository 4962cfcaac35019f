"""The no-op fast path: `cpb plan` and `cpb build` when nothing changed.

A full `cpb plan` or `cpb build` of every image that finds every task up to
date writes `.cpb/noop.json`: the stat of every file and folder its decision
read (cpb.yaml, each module's folders and files, artifacts, root file system
tars, url artifacts in the cache, rendered descriptors, build records, cpb's
template and code, cekit's installed version), the environment variables cpb reads,
and the image id local storage had under every name it checked.

The next run compares just that: stats (no hashing), and the one listing of
local storage every run makes. It reads no YAML, renders no template, builds
no graph and does not import doit. Anything different, missing or unreadable
falls through to the full run, which decides again (and writes a new record
if it again finds nothing to do).

A file changed while a full run was reading it must not be certified with the
content read before the change: a record is written only when every input's
ctime (which a write always moves forward, and no user call sets back) is
older than the start of that run, less a margin for coarse file-system
clocks. Otherwise the next full run writes it.

This module is the record's format and its reader; cpb.noop.write writes
it, cpb.cli.fastpath decides when to read it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from cpb import __version__
from cpb.adapters.podman import ImageStore
from cpb.adapters.runner import Runner
from cpb.state import STATE_DIR, read_state_text, write_error
from cpb.util import file_identity

RECORD = "noop.json"
FORMAT = 1
DISABLE_ENV = "CPB_NO_FAST_PATH"


def environment() -> dict[str, str]:
    """The environment variables that change what a full run decides."""
    return {k: v for k, v in os.environ.items()
            if (k.startswith(("CPB_", "CONTAINERS_")) or k in ("HOME", "XDG_CACHE_HOME"))
            and k != DISABLE_ENV}


def stat_of(path: str) -> list[int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None  # absence is recorded too: a file that appears is a change
    return file_identity(st)


def record_path(project_root: Path) -> Path:
    return project_root / STATE_DIR / RECORD


def forget(project_root: Path) -> None:
    """Remove the record (a run that found work, or failed)."""
    path = record_path(project_root)
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:
        raise write_error(path, exc) from None


def unchanged(record_file: Path, spec: Path, command: str, runner: Runner) -> int | None:
    """The number of tasks, all up to date, if nothing changed since the record."""
    try:
        data = json.loads(read_state_text(record_file))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        return None
    if (data.get("cpb") != __version__ or data.get("spec") != str(spec)
            or data.get("environment") != environment()
            or (command == "plan" and data.get("pods"))):
        return None
    files, images = data.get("files"), data.get("images")
    if not isinstance(files, dict) or not isinstance(images, dict):
        return None
    for path, stat in files.items():
        if stat_of(path) != stat:
            return None
    store = ImageStore(runner)
    if store.lister != data.get("lister"):
        return None
    snap = store.snapshot()
    if any(snap.image_id(ref) != image_id for ref, image_id in images.items()):
        return None
    tasks = data.get("tasks")
    return tasks if isinstance(tasks, int) else None
