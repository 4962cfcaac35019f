"""Which run last ran each task, and how it ended: `.cpb/logs/runs.json`.

A task's log under `.cpb/logs/` is rewritten each time the task runs, so the
log alone does not say when it was written, by which command, or whether the
task failed. The build reporter records that here as each task finishes;
`cpb logs` shows it beside the log and `cpb graph` colours a task that failed
in its last run. Only explanations live here: deleting it loses nothing else.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cpb.errors import CpbError
from cpb.state import StateDir, read_state_text, write_json_atomic

RUNS_FILE = "runs.json"
_lock = threading.Lock()  # tasks finish on doit's worker threads


@dataclass(frozen=True)
class TaskRun:
    """The last run of one task."""

    task: str
    result: str  # "ok", "failed" or "not run" (a task it needs failed)
    run_started: float  # time.time() when that cpb command started
    command: str  # the command line of that run, e.g. "cpb build -j 2"
    seconds: float
    finished: float = 0.0  # time.time() when the task ended
    message: str = ""  # the first line of a failure

    def wrote(self, mtime: float) -> bool:
        """Whether a log last modified at `mtime` was written by this run of the task
        (not by a later run that was interrupted before it could record itself)."""
        return self.finished - self.seconds - 2 <= mtime <= self.finished + 2


def runs_path(state: StateDir) -> Path:
    return state.root / "logs" / RUNS_FILE


def read_runs(state: StateDir) -> dict[str, TaskRun]:
    """Every task's last run; a missing or damaged file is an empty record."""
    try:
        data = json.loads(read_state_text(runs_path(state)))
    except (OSError, ValueError):
        return {}
    runs: dict[str, TaskRun] = {}
    tasks = data.get("tasks") if isinstance(data, dict) else None
    for task, entry in (tasks or {}).items():
        try:
            runs[task] = TaskRun(task, str(entry["result"]), float(entry["run_started"]),
                                 str(entry["command"]), float(entry["seconds"]),
                                 float(entry.get("finished", 0.0)),
                                 str(entry.get("message", "")))
        except (KeyError, TypeError, ValueError):
            continue  # one damaged entry does not hide the others
    return runs


class RunRecorder:
    """Records each finished task of one run (thread-safe)."""

    def __init__(self, state: StateDir, command: str, started: float | None = None) -> None:
        self.state, self.command = state, command
        self.started = time.time() if started is None else started

    def finished(self, task: str, result: str, seconds: float, message: str = "") -> None:
        entry: dict[str, Any] = {"result": result, "run_started": self.started,
                                 "command": self.command, "seconds": round(seconds, 3),
                                 "finished": time.time()}
        if message:
            entry["message"] = message.splitlines()[0][:500]
        with _lock:
            path = runs_path(self.state)
            try:
                data = json.loads(read_state_text(path))
                tasks = data["tasks"] if isinstance(data.get("tasks"), dict) else {}
            except (OSError, ValueError, AttributeError, KeyError):
                tasks = {}
            tasks[task] = entry
            # an explanation only: a full disk must not fail the build
            with contextlib.suppress(OSError, CpbError):
                write_json_atomic(path, {"tasks": tasks})
