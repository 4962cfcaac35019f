"""One workflow for every front door: lock → open → repair → plan → run → record.

`cpb build`, `cpb push` and `cpb up` run all of it (`run_tasks`); a
project's dodo.py runs the first steps (`prepared`) and lets doit run the
tasks, so a plain `doit` also holds the project lock and repairs the
records first. `cpb plan` only opens and plans: it takes no lock and writes
no records.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cpb.adapters.artifacts import ArtifactCache
from cpb.adapters.runner import ProcessRunner, Runner
from cpb.project import Project, load_project_spec, resolve_project
from cpb.spec.consent import HostPaths
from cpb.state import HeldLock, StateDir, prepare_dep_file
from cpb.tasks.plan import make_plan
from cpb.tasks.records import record_found, repair_records

RunnerFactory = Callable[[HeldLock], Runner]


@dataclass(frozen=True)
class Opening:
    """How to open the project: everything `open_project` takes but the runner."""

    spec_file: Path
    cache: ArtifactCache | None = None
    registry_cache: bool = True
    host_paths: HostPaths | None = None  # host paths outside the project the user allowed
    # The runner, given the project lock its commands must run under (inherited,
    # and their process groups recorded: a build cpb started keeps the project
    # locked if cpb dies).
    runner: RunnerFactory = ProcessRunner.holding


@contextmanager
def prepared(opening: Opening, *, on_wait: Callable[[str], None] | None = None,
             on_ended: Callable[[str], None] | None = None) -> Iterator[Project]:
    """Steps lock → open → repair: the project, its lock held while inside.

    `on_wait(holder)`: the lock is held by another run, which we wait for;
    `on_ended(message)`: the lock's dead owner left commands, which were ended.

    The spec is read first: a bad spec is refused before anything is written
    (the lock lives in .cpb/).
    """
    spec = load_project_spec(opening.spec_file, host_paths=opening.host_paths)
    with StateDir(spec.root).lock(on_wait=on_wait, on_ended=on_ended) as held:
        # Resolved under the lock: what another run changed while we waited is seen.
        project = resolve_project(spec, runner=opening.runner(held),
                                  cache=opening.cache, registry_cache=opening.registry_cache,
                                  list_early=True)
        repair_records(project)
        record_found(project)
        prepare_dep_file(project.spec.root)  # doit's, even when doit has nothing to run
        yield project


@dataclass(frozen=True)
class Outcome:
    project: Project
    tasks: int  # planned
    ran: bool  # False: everything was up to date, doit was not started
    code: int  # doit's: 0 ok, 1 a task failed


def run_tasks(opening: Opening, targets: Callable[[Project], Sequence[str]], *,
              jobs: int = 1, keep_going: bool = True,
              on_wait: Callable[[str], None] | None = None,
              on_ended: Callable[[str], None] | None = None,
              check: Callable[[Project, Sequence[str]], None] | None = None,
              on_noop: Callable[[Project, int], None] | None = None,
              display: Callable[[Project, int], object] | None = None,
              command: str = "cpb build") -> Outcome:
    """All the steps for `targets(project)`; `check` runs before planning, `on_noop`
    (the record step) when nothing was pending; `display(project, pending)`
    makes what shows doit's run; `command` is recorded in the tasks' logs."""
    with prepared(opening, on_wait=on_wait, on_ended=on_ended) as project:
        wanted = list(targets(project))
        if check is not None:
            check(project, wanted)
        planned = make_plan(project, wanted)
        if not any(p.pending for p in planned):
            # The checks doit would make, made once: nothing to run, so doit
            # (and its import) is skipped.
            if on_noop is not None:
                on_noop(project, len(planned))
            return Outcome(project, len(planned), False, 0)
        shown = display(project, sum(p.pending for p in planned)) if display else None
        from cpb.tasks.doitapp import run_doit  # only when there is work: doit is slow to import

        code = run_doit(project, wanted, jobs=jobs, keep_going=keep_going, display=shown,
                        command=command)
    return Outcome(project, len(planned), True, code)
