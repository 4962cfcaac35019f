"""The `.cpb/` folder: layout, atomic writes, stamps and the project lock.

Nothing here is the truth about images (local storage is); stamps record
what the last successful run used, so that `cpb plan` can say what changed.
Every write goes to a temporary file that is renamed into place, so a
killed run leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cpb.errors import EnvironmentProblem, SpecError, StateLocked

log = logging.getLogger(__name__)
STATE_DIR = ".cpb"
SPEC_FILE = "cpb.yaml"


def find_spec_file(start: Path) -> Path:
    """cpb.yaml in `start` or the nearest folder above it."""
    start = start.resolve()
    for folder in (start, *start.parents):
        candidate = folder / SPEC_FILE
        if candidate.is_file():
            return candidate
    raise SpecError(f"no {SPEC_FILE} here or in any folder above {start}")


def write_bytes_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, value: Any) -> None:
    write_bytes_atomic(path, (json.dumps(value, indent=1, sort_keys=True) + "\n").encode())


class StateDir:
    def __init__(self, project_root: Path) -> None:
        self.root = project_root / STATE_DIR

    def stamp_path(self, task: str) -> Path:
        kind, _, name = task.partition(":")
        return self.root / "state" / kind / f"{name}.json"

    def read_stamp(self, task: str) -> dict[str, Any] | None:
        path = self.stamp_path(task)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            log.warning("%s is corrupt; it will be rewritten by the next run", path)
            return None
        return data if isinstance(data, dict) else None

    def write_stamp(self, task: str, value: dict[str, Any]) -> None:
        write_json_atomic(self.stamp_path(task), value)

    def render_path(self, image: str) -> Path:
        return self.root / "render" / image / "image.yaml"

    def build_dir(self, image: str) -> Path:
        return self.root / "build" / image

    def log_path(self, task: str) -> Path:
        return self.root / "logs" / (task.replace(":", "-") + ".log")

    @property
    def hash_cache(self) -> Path:
        return self.root / "hashes.json"

    @property
    def doit_db(self) -> Path:
        return self.root / "doit.json"

    @contextmanager
    def lock(self, *, wait: bool = True, on_wait: Any = None) -> Iterator[int]:
        """Hold the project lock: one build at a time per project.

        flock is released by the kernel when the process dies, so a killed
        run never leaves a stale lock behind. Yields the lock's file
        descriptor: commands that inherit it keep the project locked.
        """
        path = self.root / "lock"
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            handle = path.open("a+")
        except OSError as exc:
            why = ("it is not a folder" if self.root.exists() and not self.root.is_dir()
                   else exc.strerror)
            raise EnvironmentProblem(f"cannot use {self.root}: {why}") from None
        try:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                holder = _describe_holder(handle.read().strip())
                if not wait:
                    raise StateLocked(f"another cpb run ({holder}) is using {self.root}") from None
                if on_wait is not None:
                    on_wait(holder)
                fcntl.flock(handle, fcntl.LOCK_EX)
            handle.seek(0)
            handle.truncate()
            handle.write(f"pid {os.getpid()}")
            handle.flush()
            yield handle.fileno()
        finally:
            handle.close()


def _describe_holder(text: str) -> str:
    """Who holds the lock; a dead cpb's build commands hold it until they end."""
    word, _, number = text.partition(" ")
    if word != "pid" or not number.isdigit():
        return text or "another process"
    try:
        os.kill(int(number), 0)
    except ProcessLookupError:
        return f"{text}, which has ended; the build commands it started are still running"
    except PermissionError:
        pass
    return text


def prepare_dep_file(project_root: Path) -> None:
    """Make doit's dependency file safe to open.

    doit writes it once at the end of a run, so a killed run can leave it
    truncated; doit would then refuse to start. cpb's own checks do not need
    it, so a damaged one is replaced with a warning.
    """
    path = project_root / ".cpb" / "doit.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        text = path.read_text()
    except FileNotFoundError:
        return
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    # doit indexes it as {task: {key: value}}; anything else crashes doit
    if not (isinstance(data, dict) and all(isinstance(v, dict) for v in data.values())):
        log.warning("%s was damaged (an interrupted run?); starting it afresh", path)
        path.unlink()
