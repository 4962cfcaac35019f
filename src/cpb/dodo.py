"""Tasks for a project's own dodo.py, so that `doit` there builds like `cpb build`.

A project's dodo.py is just::

    from cpb.dodo import *  # noqa: F403
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from doit.exceptions import InvalidDodoFile

from cpb.adapters.runner import Runner
from cpb.errors import CpbError
from cpb.project import open_project
from cpb.state import find_spec_file, prepare_dep_file
from cpb.tasks.doitapp import doit_config, task_dicts
from cpb.tasks.records import record_found

__all__ = ["DOIT_CONFIG", "task_cpb"]

# doit imports dodo.py with the working directory set to the dodo's folder.
_ROOT = Path.cwd()
prepare_dep_file(_ROOT)
DOIT_CONFIG: dict[str, Any] = doit_config(_ROOT, plain_doit=True)


def task_cpb() -> Iterator[dict[str, Any]]:
    """Render, build and tag every image of cpb.yaml."""
    try:
        project = open_project(find_spec_file(_ROOT), runner=Runner())
        record_found(project)
    except CpbError as exc:
        # doit prints these as one "ERROR:" line, without a traceback
        raise InvalidDodoFile(str(exc)) from None
    for task in task_dicts(project):
        # `basename` makes each a top-level task, named as in `cpb plan`.
        name = task.pop("name")
        yield {**task, "basename": name}
