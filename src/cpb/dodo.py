"""Tasks for a project's own dodo.py, so that `doit` there builds like `cpb build`.

A project's dodo.py is just::

    from cpb.dodo import *  # noqa: F403

It runs the first steps of cpb's workflow (cpb.workflow.prepared: lock,
open, repair) when doit loads the tasks, and holds the project lock until
doit exits, so a plain `doit` never runs beside a `cpb build`.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from doit.exceptions import InvalidDodoFile

from cpb.errors import CpbError
from cpb.state import find_spec_file, prepare_dep_file
from cpb.tasks.doitapp import doit_config, task_dicts
from cpb.workflow import Opening, prepared

__all__ = ["DOIT_CONFIG", "task_cpb"]

# doit imports dodo.py with the working directory set to the dodo's folder.
_ROOT = Path.cwd()
prepare_dep_file(_ROOT)
DOIT_CONFIG: dict[str, Any] = doit_config(_ROOT)
# Never closed: the kernel releases the lock when doit's process ends.
_HELD = ExitStack()


def _waiting(holder: str) -> None:
    print(f"waiting for another cpb run in this project ({holder}) to finish...",
          file=sys.stderr)


def task_cpb() -> Iterator[dict[str, Any]]:
    """Render, build and tag every image of cpb.yaml."""
    try:
        project = _HELD.enter_context(prepared(Opening(find_spec_file(_ROOT)),
                                               on_wait=_waiting))
    except CpbError as exc:
        # doit prints these as one "ERROR:" line, without a traceback
        raise InvalidDodoFile(str(exc)) from None
    for task in task_dicts(project):
        # `basename` makes each a top-level task, named as in `cpb plan`.
        name = task.pop("name")
        yield {**task, "basename": name}
