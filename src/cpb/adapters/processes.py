"""Processes cpb started, seen through /proc: who they are, and stopping them.

Each command cpb starts runs in a process group of its own (runner.py), but
not everything it starts stays in that group: a `podman build` step runs its
container under runc in a session (and pid namespace) of its own. So
stopping a command means its group *and* every process below its members in
the process tree, found before any of them is signalled (once a parent dies,
its children are re-parented and the tree no longer says whose they were).

A cpb killed with SIGKILL cannot stop anything. The project lock records its
process groups; the next run ends what is left of them here, but only after
checking that a number still names the same process: a process is the pair
(pid, start time), and the start time (field 22 of /proc/PID/stat, in clock
ticks since boot) changes when the kernel hands the number to a new process.

podman is never the first to be signalled while it writes to its storage. A
podman killed between recording an image and writing the image's files
leaves an image that makes every later `podman images` and `buildah images`
fail ("consider removing the image"). So a build is stopped from the inside:
its step's container is killed, podman fails the step, removes its working
container and exits by itself (in well under a second); only a podman that
has not ended after the grace period is signalled.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Callable, Iterable
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)
PROC = Path("/proc")


@dataclass(frozen=True)
class ProcInfo:
    pid: int
    name: str  # the kernel's short name (comm), e.g. "cekit", "podman"
    state: str  # R, S, D, Z (zombie) ...
    ppid: int
    pgrp: int
    start: int  # clock ticks after boot


def proc_info(pid: int) -> ProcInfo | None:
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except (OSError, ValueError):
        return None
    # comm is in parentheses and may itself contain spaces or parentheses
    head, _, rest = text.rpartition(")")
    fields = rest.split()
    try:
        return ProcInfo(pid=pid, name=head.partition("(")[2], state=fields[0],
                        ppid=int(fields[1]), pgrp=int(fields[2]), start=int(fields[19]))
    except (IndexError, ValueError):
        return None


def process_start(pid: int) -> int | None:
    """The process's start time, None if there is no such (living) process."""
    info = proc_info(pid)
    return None if info is None or info.state == "Z" else info.start


def is_running(pid: int, start: int | None) -> bool:
    """`pid` is still the process that had start time `start` (None: any process)."""
    now = process_start(pid)
    return now is not None and (start is None or now == start)


def living() -> list[ProcInfo]:
    """Every process that is not a zombie, from one pass over /proc."""
    found = []
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            info = proc_info(int(entry.name))
            if info is not None and info.state != "Z":
                found.append(info)
    return found


def group_and_below(pgid: int, start: int | None) -> list[ProcInfo]:
    """The members of process group `pgid` and every process below them in the tree.

    `start`: the group leader's start time, to tell our group from a later one
    with the same number (None: the leader is known to be ours). While the
    leader lives, it must have that start time. Once it has exited, its number
    cannot be given to a new process while other processes still use it as
    their group id, so members left in that group are its own.
    """
    procs = living()
    leader = next((p for p in procs if p.pid == pgid), None)
    if leader is not None and start is not None and leader.start != start:
        return []  # the number names another process now
    children: dict[int, list[ProcInfo]] = {}
    for p in procs:
        children.setdefault(p.ppid, []).append(p)
    found = {p.pid: p for p in procs if p.pgrp == pgid}
    todo = list(found.values())
    while todo:
        for child in children.get(todo.pop().pid, []):
            if child.pid not in found:
                found[child.pid] = child
                todo.append(child)
    return sorted(found.values(), key=lambda p: p.pid)


# Commands of podman's and buildah's that write images to storage.
_ENGINES = frozenset({"podman", "buildah"})
_WRITING = frozenset({"build", "bud", "commit", "import", "load", "pull", "tag"})
# Below a podman build, what is not the step's container: podman itself
# re-executed as the OCI runtime wrapper (its kernel name is "exe") and its
# storage and network helpers. conmon runs a pod's containers, never a step's.
_NOT_A_STEP = _ENGINES | {"exe", "conmon", "fuse-overlayfs", "slirp4netns", "netavark",
                          "aardvark-dns", "catatonit"}


def _argv(pid: int) -> list[str]:
    try:
        raw = (PROC / str(pid) / "cmdline").read_bytes()
    except OSError:
        return []
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def storage_writers(procs: Iterable[ProcInfo]) -> list[ProcInfo]:
    """The podman and buildah processes that may be writing images (build, commit,
    import, load, pull, tag: a subcommand among their first arguments)."""
    return [p for p in procs
            if p.name in _ENGINES and _WRITING.intersection(_argv(p.pid)[1:4])]


def build_steps(procs: Iterable[ProcInfo], writers: Iterable[ProcInfo]) -> list[ProcInfo]:
    """The processes of the build steps' containers below `writers` (in `procs`)."""
    procs = list(procs)
    by_pid = {p.pid: p for p in procs}
    roots = {p.pid for p in writers}
    steps = []
    for p in procs:
        if p.name in _NOT_A_STEP:
            continue
        parent = by_pid.get(p.ppid)
        while parent is not None and parent.pid not in roots and parent.name != "conmon":
            parent = by_pid.get(parent.ppid)
        if parent is not None and parent.pid in roots:
            steps.append(p)
    return steps


def _let_writers_finish(pgid: int, start: int | None, procs: list[ProcInfo], grace: float,
                        reap: Callable[[], object] | None) -> None:
    """Kill the build steps' containers (SIGKILL: a container's first process
    ignores SIGTERM from outside its pid namespace unless it handles it) and
    wait up to `grace` seconds for podman to end by itself. A step that
    starts meanwhile (podman was committing the previous one) is killed too."""
    writers = storage_writers(procs)
    deadline = time.monotonic() + grace
    while writers and time.monotonic() < deadline:
        for p in build_steps(group_and_below(pgid, start), writers):
            if is_running(p.pid, p.start):
                with suppress(ProcessLookupError, PermissionError):
                    os.kill(p.pid, signal.SIGKILL)
        if reap is not None:
            reap()
        writers = [p for p in writers if is_running(p.pid, p.start)]
        if writers:
            time.sleep(0.05)


def _signal(pgid: int, procs: Iterable[ProcInfo], sig: int) -> None:
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
    for p in procs:
        if p.pgrp != pgid and is_running(p.pid, p.start):  # never a reused number
            with suppress(ProcessLookupError, PermissionError):
                os.kill(p.pid, sig)


def stop_tree(pgid: int, start: int | None = None, grace: float = 10.0,
              reap: Callable[[], object] | None = None) -> list[ProcInfo]:
    """SIGTERM group `pgid` and what runs below it, SIGKILL what is left after `grace`
    seconds; return the processes that were running. `reap`: wait for our own
    child (the leader), or it stays a zombie. A podman writing to its storage
    is first given `grace` seconds to end by itself (see the module's docstring)."""
    procs = group_and_below(pgid, start)
    if not procs:
        return []
    _let_writers_finish(pgid, start, procs, grace, reap)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        _signal(pgid, procs, sig)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            if reap is not None:
                reap()
            if not any(is_running(p.pid, p.start) for p in procs):
                return procs
            time.sleep(0.1)
    left = [p.pid for p in procs if is_running(p.pid, p.start)]
    if left:
        log.warning("processes %s did not stop", left)
    return procs


def end_groups(groups: Iterable[tuple[int, int]], grace: float = 10.0) -> list[ProcInfo]:
    """Stop the (pgid, leader start time) groups a dead cpb left, and what runs
    below them; return the processes that were running."""
    ended: list[ProcInfo] = []
    for pgid, start in groups:
        ended += stop_tree(pgid, start, grace)
    return ended
