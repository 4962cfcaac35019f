"""Running the task graph with doit.

`task_dicts` turns the graph into doit task dictionaries (each with its
kind's `uptodate` check and action from cpb.tasks.table, and its graph
predecessors as `task_dep`); `CpbLoader` hands them to doit for `cpb build`, and
`cpb.dodo.task_cpb` yields the same dictionaries to a project's dodo.py so
that a plain `doit` does the same work.
"""

from __future__ import annotations

import errno
import importlib.metadata
import logging
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from doit.cmd_base import TaskLoader2
from doit.doit_cmd import DoitMain
from doit.exceptions import TaskFailed
from doit.reporter import ConsoleReporter
from doit.task import Task, dict_to_task

from cpb.adapters.runner import CommandsStopped
from cpb.errors import EXIT_ENVIRONMENT, CpbError, DiskFull, StateWriteError
from cpb.graph import ordered
from cpb.naming import split_task, task_name
from cpb.state import no_space_left, prepare_dep_file, write_error
from cpb.tasks import doitdb
from cpb.tasks.doitdb import BACKEND, STOP
from cpb.tasks.kind import TaskKind
from cpb.tasks.runlog import RunRecorder
from cpb.tasks.table import kind_of

if TYPE_CHECKING:
    from cpb.project import Project

log = logging.getLogger(__name__)


def _run_action(project: Project, kind: TaskKind, subject: str) -> TaskFailed | None:
    task = task_name(kind.name, subject)
    if STOP.error is not None:
        STOP.record(STOP.error, task)
        return TaskFailed(f"not run: {STOP.error}")
    try:
        kind.action(project, subject)
    except CommandsStopped as exc:
        STOP.tasks.add(task)  # cpb is being interrupted: its one line says so
        return TaskFailed(str(exc))
    except StateWriteError as exc:
        STOP.record(exc, task)
        return TaskFailed(str(exc))
    except CpbError as exc:
        if no_space_left(project.state.root):
            # cekit, podman or a download failed writing under .cpb/ (its log
            # may be empty for the same reason): say what is wrong
            full = DiskFull(f"no space left on device writing .cpb/ "
                            f"({task} failed: {str(exc).splitlines()[0]}); "
                            "images built so far are kept")
            STOP.record(full, task)
            return TaskFailed(str(full))
        if exc.exit_code == EXIT_ENVIRONMENT:
            STOP.record_environment(exc)
        return TaskFailed(str(exc))
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        error = write_error(exc.filename or project.state.root, exc)
        STOP.record(error, task)
        return TaskFailed(str(error))
    return None  # never a Path or other non-JSON value: it would truncate doit's db


_BACKEND_PLUGIN = {"BACKEND": {BACKEND: f"{doitdb.__name__}:AtomicJsonDB"}}


def _backend_installed() -> bool:
    """A plain `doit` finds the backend through the entry point cpb's package declares."""
    return any(e.name == BACKEND for e in importlib.metadata.entry_points(group="doit.BACKEND"))


def _uptodate(project: Project, kind: TaskKind, subject: str) -> bool:
    """doit prints a traceback for an exception here: say "not up to date" instead.

    The action then runs, meets the same problem (podman not answering) and
    reports it as the task's one-line failure.
    """
    try:
        return kind.uptodate(project, subject)
    except CpbError as exc:
        log.debug("%s:%s: up-to-date check failed: %s", kind.name, subject, exc)
        return False


def task_dicts(project: Project) -> list[dict[str, Any]]:
    """doit's tasks: the networkx graph of the project's tasks, in cpb's order."""
    graph = project.graph.to_networkx()
    result = []
    for task in ordered(graph):
        kind, subject = kind_of(task)
        result.append({
            "name": task,
            "doc": f"{kind.name} {kind.label} {subject}",
            "actions": [(_run_action, [project, kind, subject])],
            # (callable, args, kwargs): doit inspects a partial's signature at
            # every check, a plain function's cheaply
            "uptodate": [(_uptodate, [project, kind, subject], {})],
            "task_dep": sorted(graph.predecessors(task)),
            # 2: doit must not capture output. Capturing swaps sys.stdout per
            # action, and with threads (-j) the swaps race and can leave a dead
            # capture stream as sys.stdout. cpb's actions print nothing anyway.
            "verbosity": 2,
        })
    return result


def doit_config(project_root: Path, *, plain_doit: bool = False) -> dict[str, Any]:
    """doit's settings; `plain_doit`: for a project's dodo.py, where cpb's backend
    is known to doit only if cpb is installed with its entry points."""
    return {
        "dep_file": str(project_root / ".cpb" / "doit.json"),
        "backend": BACKEND if not plain_doit or _backend_installed() else "json",
        "par_type": "thread",
        "reporter": CpbReporter,
        "check_file_uptodate": "timestamp",
    }


class CpbLoader(TaskLoader2):  # type: ignore[misc]
    def __init__(self, project: Project, reporter: Any = None) -> None:
        super().__init__()
        self.project, self.reporter = project, reporter

    def setup(self, opt_values: dict[str, Any]) -> None:
        pass

    def load_doit_config(self) -> dict[str, Any]:
        config = doit_config(self.project.spec.root)
        if self.reporter is not None:
            config["reporter"] = self.reporter  # doit takes an instance as well as a class
        return config

    def load_tasks(self, cmd: Any, pos_args: Sequence[str]) -> list[Task]:
        return [dict_to_task(d) for d in task_dicts(self.project)]


class CpbReporter(ConsoleReporter):  # type: ignore[misc]
    """One line when a task starts and ends; failures summarised at the end.

    `display` (cli/display.py) shows those lines, plain or live; without one
    (a project's dodo.py run by plain `doit`) they are written to stdout.
    `recorder` remembers how each task's last run ended (tasks/runlog.py).
    """

    desc = "cpb progress"

    def __init__(self, outstream: Any, options: dict[str, Any], display: Any = None,
                 recorder: RunRecorder | None = None) -> None:
        super().__init__(outstream, options)
        # doit binds its default stream when it is imported, and swaps
        # sys.stdout while python-actions run; take the caller's stream now.
        self.out = sys.stdout
        self.display, self.recorder = display, recorder
        self.started: dict[str, float] = {}
        self.done: list[str] = []
        self.skipped = 0

    def write(self, text: str) -> None:
        if self.display is not None:
            self.display.line(text.rstrip("\n"))
            return
        self.out.write(text)
        self.out.flush()

    def _took(self, task: Task) -> float:
        return time.monotonic() - self.started.get(task.name, time.monotonic())

    def execute_task(self, task: Task) -> None:
        self.started[task.name] = time.monotonic()
        if self.display is not None:
            self.display.started(task.name)
        else:
            self.write(f"  ... {task.name}\n")

    def add_success(self, task: Task) -> None:
        took = self._took(task)
        self.done.append(task.name)
        if self.display is not None:
            self.display.finished(task.name, False)
        self.write(f"  ok  {task.name} ({took:.1f} s)\n")
        if self.recorder is not None:
            self.recorder.finished(task.name, "ok", took)

    def add_failure(self, task: Task, fail: Any) -> None:
        self.failures.append({"task": task, "exception": fail})
        if STOP.error is not None or task.name in STOP.tasks:
            return  # the run's one error line says it, once
        message = fail.get_msg().strip() if fail.report else ""
        if not task.executed:
            message = "not run: a task it needs failed"
        if self.display is not None:
            self.display.finished(task.name, bool(task.executed))
        self.write(f"  FAIL {task.name}: {message}\n")
        if self.recorder is not None:
            self.recorder.finished(task.name, "failed" if task.executed else "not run",
                                   self._took(task) if task.executed else 0.0, message)

    def skip_uptodate(self, task: Task) -> None:
        self.skipped += 1

    def skip_ignore(self, task: Task) -> None:
        self.skipped += 1

    def complete_run(self) -> None:
        failed = [r["task"].name for r in self.failures if r["task"].executed]
        blocked = [r["task"].name for r in self.failures if not r["task"].executed]
        summary = f"{len(self.done)} done, {self.skipped} up to date"
        if failed:
            summary += f", {len(failed)} failed: {', '.join(failed)}"
        if blocked:
            summary += f"; {len(blocked)} not run because of it"
        logs = sorted({split_task(t)[1] if split_task(t)[0] != "pod" else t for t in failed
                       if split_task(t)[0] in ("rootfs", "build", "push", "pod")})
        if logs:
            summary += "; logs: " + ", ".join(f"cpb logs {name}" for name in logs)
        if self.display is not None:
            self.display.close()  # the live area goes; the summary stays
        self.write(summary + "\n")
        for msg in self.runtime_errors:
            self.write(msg + "\n")


def run_doit(project: Project, targets: Iterable[str], *, jobs: int = 1,
             keep_going: bool = True, extra: Sequence[str] = (), display: Any = None,
             command: str = "cpb build") -> int:
    """Run doit over the project's graph; doit's return code (0 ok, 1 failed, 2/3 errors).

    `display`: shows the run (cli/display.py); closed when the run ends.
    `command`: the command line recorded as the run each task's log came from.
    """
    prepare_dep_file(project.spec.root)
    STOP.reset(active=True)
    argv = ["run", "-n", str(jobs), "-P", "thread"]
    if keep_going:
        argv.append("--continue")
    argv += [*extra, *targets]
    streams = sys.stdout, sys.stderr
    reporter = CpbReporter(sys.stdout, {}, display, RunRecorder(project.state, command))
    main = DoitMain(CpbLoader(project, reporter), config_filenames=(),
                    extra_config=_BACKEND_PLUGIN)
    try:
        code = int(main.run(argv))
    finally:
        sys.stdout, sys.stderr = streams  # whatever doit did to them
        STOP.active = False
        if display is not None:
            display.close()  # also after Ctrl-C: the terminal is left clean
    if STOP.error is not None:
        raise STOP.error
    if code != 0 and STOP.environment is not None:
        raise STOP.environment  # exit 3: the machine's fault, not the project's
    return code

