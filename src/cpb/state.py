"""The `.cpb/` folder: layout, atomic writes, stamps and the project lock.

Nothing here is the truth about images (local storage is); stamps record
what the last successful run used, so that `cpb plan` can say what changed.
Every write goes to a temporary file that is renamed into place, so a
killed run leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import shutil
import stat
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from cpb.adapters.processes import end_groups, is_running, process_start
from cpb.errors import (
    DiskFull,
    EnvironmentProblem,
    SpecError,
    StateLocked,
    StateWriteError,
    UnsafeState,
)

log = logging.getLogger(__name__)
STATE_DIR = ".cpb"
# A file whose ctime is this close to a run's start may have changed after the run
# read it, within one tick of a coarse file-system clock: no cache vouches for it.
RACY_MARGIN_NS = 2_000_000_000
SPEC_FILE = "cpb.yaml"
DESCRIPTOR = "image.yaml"  # an image's rendered descriptor, in StateDir.render_dir


def find_spec_file(start: Path) -> Path:
    """cpb.yaml in `start` or the nearest folder above it."""
    start = start.resolve()
    for folder in (start, *start.parents):
        candidate = folder / SPEC_FILE
        if candidate.is_file():
            return candidate
    raise SpecError(f"no {SPEC_FILE} here or in any folder above {start}")


def write_bytes_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write `path` whole or not at all: a temporary file beside it, renamed into place.

    A write that fails (a full disk, a read-only file system) leaves the old
    file as it was and raises `StateWriteError` (`DiskFull` for no space):
    one line for the user, never a traceback.
    """
    tmp: str | None = None
    try:
        state_folder(path.parent)  # under .cpb/: never through a link a project shipped
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except OSError as exc:
        _remove_quietly(tmp)
        raise write_error(path, exc) from None
    except BaseException:
        _remove_quietly(tmp)
        raise


# -- no writes through symbolic links under .cpb/ ------------------------------
#
# A repository can commit a .cpb/ folder, with `.cpb/logs/build-x.log ->
# ~/.ssh/authorized_keys` in it. cpb therefore never follows a link there:
# folders are made one component at a time and refused when one is a link,
# files are opened with O_NOFOLLOW or replaced by rename (which replaces a link
# rather than writing through it), and `StateDir.check_links` refuses a .cpb/
# with a link where cpb writes before anything runs.

def unsafe_link(path: Path | str) -> UnsafeState:
    """The one-line refusal of a link under .cpb/."""
    try:
        target = os.readlink(path)
    except OSError:
        target = "?"
    return UnsafeState(f"{shown_path(path)} is a symbolic link (to {target}); cpb never "
                       "writes through links in .cpb/, which a project can ship: remove it, "
                       "or run `cpb clean`, which removes links without following them")


def state_folder(folder: Path) -> Path:
    """Make `folder` (.cpb/ or a folder below it) a real folder, never through a link.

    Each component from .cpb/ down is made if missing; a link or a file in
    the way is refused with one line.
    """
    parts = folder.parts
    if STATE_DIR not in parts:
        folder.mkdir(parents=True, exist_ok=True)
        return folder
    start = len(parts) - 1 - parts[::-1].index(STATE_DIR)
    current = Path(*parts[:start])
    for part in parts[start:]:
        current = current / part
        try:
            os.mkdir(current, 0o755)
            continue
        except FileExistsError:
            pass
        info = os.lstat(current)
        if stat.S_ISLNK(info.st_mode):
            raise unsafe_link(current)
        if not stat.S_ISDIR(info.st_mode):
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(current))
    return folder


def remove_entry(path: Path) -> None:
    """Remove a file, link or folder tree without following any link in it."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(info.st_mode):
        shutil.rmtree(path)  # removes links inside, never what they point to
    else:
        os.unlink(path)


def fresh_folder(folder: Path) -> Path:
    """An empty folder at `folder` under .cpb/, made now: whatever was there
    (a link, an old tree a debootstrap left) is removed, never followed."""
    state_folder(folder.parent)
    try:
        remove_entry(folder)
        os.mkdir(folder, 0o755)
    except OSError as exc:
        raise write_error(folder, exc) from None
    return folder


def open_log(path: Path) -> int:
    """A file descriptor appending to `path`, which must not be a link."""
    try:
        return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW
                       | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise unsafe_link(path) from None
        raise


MAX_STATE_FILE = 256 * 1024 * 1024  # far above any record; /dev/zero is not one


def read_state_text(path: Path | str) -> str:
    """A file of .cpb/ as text; `OSError` when it is a link, not a regular file or huge.

    Reads happen without the lock (`cpb plan`), so a shipped
    `.cpb/state/build/x.json -> /dev/zero` must be refused here, not hang.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(path))
        if info.st_size > MAX_STATE_FILE:
            raise OSError(errno.EFBIG, "too large", str(path))
        # Asked for its size (+1, to see EOF), not for the limit: a read of
        # MAX_STATE_FILE bytes allocates that much first, 5x the cost of a small
        # file's whole read. A file that grows meanwhile is read on to the limit.
        chunks: list[bytes] = []
        size, want = 0, min(info.st_size, MAX_STATE_FILE) + 1
        while size <= MAX_STATE_FILE:
            chunk = os.read(fd, min(want, MAX_STATE_FILE + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
            want = 1 << 20
    finally:
        os.close(fd)
    if size > MAX_STATE_FILE:
        raise OSError(errno.EFBIG, "too large", str(path))
    return (chunks[0] if len(chunks) == 1 else b"".join(chunks)).decode()


def _refuse_links(folder: str, depth: int) -> None:
    with os.scandir(folder) as listing:
        for entry in listing:
            if entry.is_symlink():
                raise unsafe_link(entry.path)
            if depth > 1 and entry.is_dir(follow_symlinks=False):
                _refuse_links(entry.path, depth - 1)


def _remove_quietly(tmp: str | None) -> None:
    if tmp is not None:
        with suppress(OSError):
            os.unlink(tmp)


def write_json_atomic(path: Path, value: Any) -> None:
    write_bytes_atomic(path, (json.dumps(value, indent=1, sort_keys=True) + "\n").encode())


def fresh_file(path: Path) -> Path:
    """An empty file at `path` (a task's log), checked like every other write.

    A rename replaces a link at `path` instead of writing through it.
    """
    write_bytes_atomic(path, b"")
    return path


def shown_path(path: Path | str) -> str:
    """`.cpb/state/build/a.json`: how messages name a file under a project's .cpb/."""
    parts = Path(path).parts
    if STATE_DIR in parts:
        index = len(parts) - 1 - parts[::-1].index(STATE_DIR)
        return "/".join(parts[index:])
    return str(path)


def write_error(path: Path | str, exc: OSError) -> StateWriteError:
    """The one-line error for a failed write under .cpb/."""
    shown = shown_path(path)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return DiskFull(f"no space left on device writing {shown}; "
                        "images built so far are kept")
    return StateWriteError(f"cannot write {shown}: {exc.strerror or exc}; "
                           "images built so far are kept")


def no_space_left(folder: Path, margin: int = 64 * 1024) -> bool:
    """The file system of `folder` is (nearly) full: a command that failed writing
    there failed because of it, whatever its own message says."""
    try:
        st = os.statvfs(folder)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < margin


class StateDir:
    def __init__(self, project_root: Path) -> None:
        self.root = project_root / STATE_DIR

    def _stamp_file(self, task: str) -> str:
        """stamp_path as a string: a plan reads the build record of every image."""
        kind, _, name = task.partition(":")
        return f"{self.root}/state/{kind}/{name}.json"

    def stamp_path(self, task: str) -> Path:
        return Path(self._stamp_file(task))

    def read_stamp(self, task: str) -> dict[str, Any] | None:
        path = self._stamp_file(task)
        try:
            data = json.loads(read_state_text(path))
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            log.warning("%s is corrupt; it will be rewritten by the next run", path)
            return None
        return data if isinstance(data, dict) else None

    def write_stamp(self, task: str, value: dict[str, Any]) -> None:
        write_json_atomic(self.stamp_path(task), value)

    def render_dir(self, image: str) -> str:
        """The folder of `image`'s descriptor and generated modules, as a string:
        every plan checks the files below it, and pathlib would be most of that cost."""
        return f"{self.root}/render/{image}"

    def render_path(self, image: str) -> Path:
        return Path(self.render_dir(image), DESCRIPTOR)

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

    def check_links(self) -> None:
        """Refuse a .cpb/ that is a link, or holds one where cpb (or cekit, or
        podman's --digestfile) writes: up to .cpb/<folder>/<name>/<entry>."""
        try:
            info = os.lstat(self.root)
        except FileNotFoundError:
            return
        if stat.S_ISLNK(info.st_mode):
            raise unsafe_link(self.root)
        if stat.S_ISDIR(info.st_mode):  # a file there is the lock's "not a folder"
            _refuse_links(str(self.root), 3)

    @contextmanager
    def lock(self, *, wait: bool = True, on_wait: Callable[[str], None] | None = None,
             on_ended: Callable[[str], None] | None = None,
             check: bool = True) -> Iterator[HeldLock]:
        """Hold the project lock: one build at a time per project.

        flock is released by the kernel when the process dies. The commands a
        run starts inherit the lock's descriptor, so a build left running by a
        killed cpb keeps the project locked; the lock's file names its owner
        and the process groups it started, so the next run that finds the
        owner dead ends those groups (`on_ended` says which) and goes on.
        """
        path = self.root / "lock"
        if check:  # `cpb clean` does not: it removes the links
            self.check_links()
        try:
            state_folder(self.root)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise unsafe_link(path) from None
            why = ("it is not a folder" if self.root.exists() and not self.root.is_dir()
                   else exc.strerror)
            raise EnvironmentProblem(f"cannot use {self.root}: {why}") from None
        try:
            if not _try_flock(fd):
                owner = _read_owner(fd)
                ended = _end_dead_owners_groups(owner)
                if ended is not None and on_ended is not None:
                    on_ended(ended)
                if ended is None or not _try_flock(fd, within=15.0):
                    holder = _describe_holder(owner)
                    if not wait:
                        raise StateLocked(f"another cpb run ({holder}) is using {self.root}")
                    if on_wait is not None:
                        on_wait(holder)
                    fcntl.flock(fd, fcntl.LOCK_EX)
            else:
                # Free, but a run killed with -9 may have left commands that
                # did not inherit the lock (`podman kube play`, see runner.py)
                ended = _end_dead_owners_groups(_read_owner(fd))
                if ended is not None and on_ended is not None:
                    on_ended(ended)
            held = HeldLock(fd, path)
            held.write()
            yield held
        finally:
            os.close(fd)


LOCK_RECORD_SIZE = 4096  # rewritten in place: no new block is needed on a full disk


class HeldLock:
    """The project lock while this process holds it.

    Its file says who holds it (pid and start time) and which process groups
    it started, as JSON padded with spaces to a fixed size: it is rewritten in
    place, so on a full disk an update still fits the block it already has.
    A runner calls `add`/`discard` as it starts and reaps each command.
    """

    def __init__(self, fd: int, path: Path) -> None:
        self.fd, self.path = fd, path
        self.pid = os.getpid()
        self.start = process_start(self.pid)
        self.groups: dict[int, int] = {}
        self._mutex = threading.Lock()

    def add(self, pid: int) -> None:
        start = process_start(pid)
        if start is None:
            return  # already gone
        with self._mutex:
            self.groups[pid] = start
            self._write_quietly()

    def discard(self, pid: int) -> None:
        with self._mutex:
            if self.groups.pop(pid, None) is not None:
                self._write_quietly()

    def write(self) -> None:
        try:
            self._write()
        except OSError as exc:
            raise write_error(self.path, exc) from None

    def _write_quietly(self) -> None:
        # A command is running already: failing cpb now would not stop it.
        # The record only helps a later run clean up after a kill -9.
        try:
            self._write()
        except OSError as exc:
            log.warning("%s", write_error(self.path, exc))

    def _write(self) -> None:
        record = {"pid": self.pid, "start": self.start,
                  "groups": sorted([pgid, start] for pgid, start in self.groups.items())}
        data = json.dumps(record).encode()
        size = max(LOCK_RECORD_SIZE, -(-(len(data) + 1) // LOCK_RECORD_SIZE) * LOCK_RECORD_SIZE)
        current = os.fstat(self.fd).st_size
        os.pwrite(self.fd, data + b" " * (size - len(data) - 1) + b"\n", 0)
        if current > size:
            os.ftruncate(self.fd, size)


def _try_flock(fd: int, within: float = 0.0) -> bool:
    deadline = time.monotonic() + within
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.1)


def _read_owner(fd: int) -> dict[str, Any]:
    """The lock file's record; an old `pid N` text is read too, anything else is {}."""
    try:
        text = os.pread(fd, 1 << 16, 0).decode(errors="replace").strip()
    except OSError:
        return {}
    word, _, number = text.partition(" ")
    if word == "pid" and number.isdigit():
        return {"pid": int(number)}
    try:
        record = json.loads(text)
    except ValueError:
        return {}
    return record if isinstance(record, dict) and isinstance(record.get("pid"), int) else {}


def _owner_alive(owner: dict[str, Any]) -> bool:
    start = owner.get("start")
    return is_running(owner["pid"], start if isinstance(start, int) else None)


def _end_dead_owners_groups(owner: dict[str, Any]) -> str | None:
    """End what a dead owner left running; a sentence saying what, or None if the
    owner is alive (or unknown, or left nothing that cpb can tell is its own)."""
    if not owner or _owner_alive(owner):
        return None
    groups = [(g[0], g[1]) for g in owner.get("groups", [])
              if isinstance(g, list) and len(g) == 2 and all(isinstance(n, int) for n in g)]
    if not groups:
        return None
    ended = end_groups(groups)
    if not ended:
        return None
    names = ", ".join(f"{p.name} (pid {p.pid})" for p in sorted(ended, key=lambda p: p.pid))
    return (f"the cpb run that held this project (pid {owner['pid']}) has ended; "
            f"stopped what it left running: {names}")


def _describe_holder(owner: dict[str, Any]) -> str:
    """Who holds the lock; a dead cpb's build commands hold it until they end."""
    if not owner:
        return "another process"
    text = f"pid {owner['pid']}"
    if not _owner_alive(owner):
        return f"{text}, which has ended; the build commands it started are still running"
    return text


def prepare_dep_file(project_root: Path) -> None:
    """Make doit's dependency file safe to open.

    doit writes it once at the end of a run, so a killed run can leave it
    truncated; doit would then refuse to start. cpb's own checks do not need
    it, so a damaged one is replaced with a warning.
    """
    path = project_root / ".cpb" / "doit.json"
    try:
        state_folder(path.parent)
    except OSError as exc:
        raise write_error(path.parent, exc) from None
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
