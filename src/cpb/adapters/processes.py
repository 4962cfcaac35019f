"""Processes cpb started, seen through /proc: who they are, and ending them.

A cpb killed with SIGKILL cannot stop the commands it started (each runs in a
process group of its own, see runner.py). The project lock records those
groups; the next run reads them here and ends what is left, but only after
checking that a number still names the same process: a process is the pair
(pid, start time), and the start time (field 22 of /proc/PID/stat, in clock
ticks since boot) changes when the kernel hands the number to a new process.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Iterable
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
                        pgrp=int(fields[2]), start=int(fields[19]))
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


def group_members(pgid: int) -> list[ProcInfo]:
    """Living (not zombie) processes of process group `pgid`."""
    found = []
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            info = proc_info(int(entry.name))
            if info is not None and info.pgrp == pgid and info.state != "Z":
                found.append(info)
    return found


def our_group(pgid: int, start: int) -> list[ProcInfo]:
    """The members of the group whose leader was (pgid, start); [] if it is gone or not ours.

    While its leader lives, it must have that start time. Once the leader has
    exited, the number cannot be given to a new process while other processes
    still use it as their group id, so members left in that group are its own.
    """
    leader = proc_info(pgid)
    if leader is not None and leader.state != "Z" and leader.start != start:
        return []  # the number names another process now
    return group_members(pgid)


def end_groups(groups: Iterable[tuple[int, int]], grace: float = 10.0) -> list[ProcInfo]:
    """SIGTERM the still-running groups among (pgid, start) pairs, SIGKILL what is left
    after `grace` seconds; return the processes that were running."""
    found = {pgid: our_group(pgid, start) for pgid, start in groups}
    found = {pgid: members for pgid, members in found.items() if members}
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pgid in found:
            with suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, sig)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            if not any(group_members(pgid) for pgid in found):
                return [p for members in found.values() for p in members]
            time.sleep(0.1)
    left = [p.pid for pgid in found for p in group_members(pgid)]
    if left:
        log.warning("processes %s did not stop", left)
    return [p for members in found.values() for p in members]
