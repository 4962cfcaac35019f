"""`TaskKind`: everything cpb knows about one kind of task, in one record.

The table of kinds (`cpb.tasks.table.TASK_KINDS`) is the only place that
lists them: the graph is expanded from each kind's `nodes`, and `cpb plan`,
doit and the CLI look a task's kind up there instead of switching on its
name. A new kind is one record beside its module, and one line in the table.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: the kinds' modules are below the project
    from cpb.project import Project
    from cpb.spec.model import ProjectSpec


@dataclass(frozen=True)
class Node:
    """One task of a kind: its subject (an image, an artifact key, a pod) and the
    task names it needs done first."""

    subject: str
    needs: tuple[str, ...] = ()


def _always(project: Project, subject: str) -> bool:
    return True


@dataclass(frozen=True)
class TaskKind:
    name: str  # the KIND in `KIND:SUBJECT`
    label: str  # what a subject is, for doit's task list: "image", "artifact", "pod"
    nodes: Callable[[ProjectSpec], Iterable[Node]]  # the tasks of this kind a spec has
    # True when the task's output exists and was made from the current inputs:
    # cheap, starts no build, writes nothing.
    uptodate: Callable[[Project, str], bool]
    action: Callable[[Project, str], None]  # raises CpbError on failure
    # Why `cpb plan` runs a task that is not up to date; `pending` holds the
    # tasks planned before it, so a reason can say "will be rebuilt".
    reasons: Callable[[Project, str, set[str]], list[str]]
    # False: planned only when asked for (a pod that is not running)
    in_default_plan: Callable[[Project, str], bool] = _always
