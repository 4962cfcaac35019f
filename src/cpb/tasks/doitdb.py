"""doit's database for cpb, and the fault that stops a whole run.

Kept apart from cpb.tasks.doitapp because doit imports every `doit.BACKEND`
plugin an environment declares whenever it starts, for any project: cpb's
entry point must cost a plain `doit` elsewhere next to nothing (this module
imports doit's own dependency module and cpb's atomic write, nothing of the
pipeline).
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from doit.dependency import JsonDB

from cpb.errors import CpbError, StateWriteError
from cpb.state import write_bytes_atomic

log = logging.getLogger(__name__)


class _Stop:
    """A fault that ends the whole run (no space left under .cpb/): the first one
    is kept, every action after it is not started, and `run_doit` raises it
    once doit has finished (doit would print an exception from an action or
    from its database as a traceback)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.error: StateWriteError | None = None
        self.tasks: set[str] = set()
        self.active = False  # inside run_doit, which reports the error itself
        # A task that failed for the environment's sake (registry down or
        # refusing the login, a tool missing): the run then exits 3, not 1.
        self.environment: CpbError | None = None

    def reset(self, active: bool) -> None:
        with self._lock:
            self.error, self.tasks, self.active = None, set(), active
            self.environment = None

    def record_environment(self, error: CpbError) -> None:
        with self._lock:
            if self.environment is None:
                self.environment = error

    def record(self, error: StateWriteError, task: str | None = None) -> None:
        with self._lock:
            if self.error is None:
                self.error = error
            if task is not None:
                self.tasks.add(task)


STOP = _Stop()


class AtomicJsonDB(JsonDB):  # type: ignore[misc]
    """doit's JSON database, written to a temporary file and renamed into place.

    doit's own JsonDB opens the file for writing (truncating it) and then
    writes: a full disk or a kill in between leaves it empty. A write that
    fails here leaves the old file whole; the run then ends with the one-line
    error (`cpb build`), or a logged one (a plain `doit`).
    """

    desc = "JSON, written atomically (cpb)"

    def dump(self) -> None:
        try:
            write_bytes_atomic(Path(self.name), self.codec.encode(self._db).encode())
        except StateWriteError as exc:
            STOP.record(exc)
            if not STOP.active:  # a plain `doit`: nobody else will say it
                log.error("%s", exc)


BACKEND = "cpb-json"


BACKEND = "cpb-json"
