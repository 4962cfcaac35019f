"""Tasks for a project's own dodo.py, so that `doit` there builds like `cpb build`.

A project's dodo.py is just::

    from cpb.dodo import *  # noqa: F403

Every task of the graph is a doit task named as in `cpb plan` (`build:hello`,
`pod:hello`), but a plain `doit` runs only the default task `images`: every
image's `tag:` task, what `cpb build` does. Pods start only when asked:
`doit up` (every pod, like `cpb up`) or `doit pod:NAME`.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from doit.exceptions import InvalidDodoFile

from cpb.errors import CpbError
from cpb.naming import POD, TAG, split_task
from cpb.state import find_spec_file, prepare_dep_file
from cpb.tasks.doitapp import doit_config, task_dicts
from cpb.workflow import Opening, prepared

__all__ = ["DOIT_CONFIG", "task_cpb"]

IMAGES_TASK = "images"  # plain `doit`: build every image, start nothing
UP_TASK = "up"  # `doit up`: start every pod (building what they need)

# doit imports dodo.py with the working directory set to the dodo's folder.
_ROOT = Path.cwd()
prepare_dep_file(_ROOT)
DOIT_CONFIG: dict[str, Any] = {**doit_config(_ROOT, plain_doit=True),
                              "default_tasks": [IMAGES_TASK]}


# The first steps of cpb's workflow (cpb.workflow.prepared: lock, open,
# repair) run when doit loads the tasks; the lock is held until doit exits
# (never closed: the kernel releases it with the process), so a plain `doit`
# never runs beside a `cpb build`.
_HELD = ExitStack()


def _say(text: str) -> None:
    print(text, file=sys.stderr)


def _waiting(holder: str) -> None:
    _say(f"waiting for another cpb run in this project ({holder}) to finish...")


def task_cpb() -> Iterator[dict[str, Any]]:
    """Render, build and tag every image of cpb.yaml."""
    try:
        project = _HELD.enter_context(prepared(Opening(find_spec_file(_ROOT)),
                                               on_wait=_waiting, on_ended=_say))
    except CpbError as exc:
        # doit prints these as one "ERROR:" line, without a traceback
        raise InvalidDodoFile(str(exc)) from None
    by_kind: dict[str, list[str]] = {TAG: [], POD: []}
    for task in task_dicts(project):
        # `basename` makes each a top-level task, named as in `cpb plan`.
        name = task.pop("name")
        by_kind.setdefault(split_task(name)[0], []).append(name)
        yield {**task, "basename": name}
    # Group tasks: no action of their own (always "up to date": doit still runs
    # their task_dep first); their names have no ':', so no graph task has them.
    yield {"basename": IMAGES_TASK, "actions": None, "task_dep": by_kind[TAG],
           "uptodate": [True],
           "doc": "build and tag every image, like `cpb build` (the default task)"}
    yield {"basename": UP_TASK, "actions": None, "task_dep": by_kind[POD], "uptodate": [True],
           "doc": "start every pod, like `cpb up`"}
