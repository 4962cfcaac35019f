"""The table of task kinds: the one list graph, plan, doit and the CLI read.

Order matters: among tasks that are free to go, one subject's tasks run in
this order (see cpb.graph.ordered). To add a kind, write its module with a
`TaskKind` record (cpb.tasks.kind) and add the record here.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from cpb.errors import GraphError
from cpb.naming import split_task
from cpb.tasks.fetch import FETCH_KIND
from cpb.tasks.images import BUILD_KIND, RENDER_KIND, ROOTFS_KIND, TAG_KIND
from cpb.tasks.kind import TaskKind
from cpb.tasks.pods import POD_KIND
from cpb.tasks.push import PUSH_KIND
from cpb.tasks.wheel import WHEEL_KIND

TASK_KINDS: tuple[TaskKind, ...] = (ROOTFS_KIND, RENDER_KIND, BUILD_KIND, TAG_KIND,
                                    FETCH_KIND, WHEEL_KIND, POD_KIND, PUSH_KIND)
KINDS: Mapping[str, TaskKind] = MappingProxyType({kind.name: kind for kind in TASK_KINDS})


def kind_of(task: str) -> tuple[TaskKind, str]:
    """The kind of a task name and its subject; an unknown kind is an error."""
    try:
        name, subject = split_task(task)
        return KINDS[name], subject
    except (ValueError, KeyError):
        raise GraphError(f"unknown task {task!r}: its kind is not one of "
                         f"{', '.join(KINDS)}") from None
