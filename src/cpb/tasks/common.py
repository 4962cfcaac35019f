"""What every task kind's action shares: its log file and its failure message."""

from __future__ import annotations

from pathlib import Path

from cpb.adapters.podman import full_storage_hint, sandbox_hint
from cpb.adapters.runner import CommandFailed
from cpb.errors import BuildError
from cpb.state import StateDir, fresh_file


def fresh_log(state: StateDir, task: str) -> Path:
    """The task's log file, emptied: each run of a task logs afresh (a checked
    write: on a full disk, the one-line error)."""
    return fresh_file(state.log_path(task))


def shown(path: Path) -> str:
    """A path for a message: relative to the working directory when below it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def task_failed(exc: CommandFailed) -> BuildError:
    """The error doit reports as `FAIL <task>: <message>`: the log, a hint, the last lines."""
    where = f"; log: {exc.log_file}" if exc.log_file else ""
    hint = sandbox_hint(exc.output) or full_storage_hint(exc.output)
    tail = "\n".join("    " + line for line in exc.tail().splitlines())
    message = f"{exc}{where}"
    if hint:
        message += f"\n  hint: {hint}"
    return BuildError(f"{message}\n  last lines:\n{tail}" if tail else message)
