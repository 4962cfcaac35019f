"""`cpb plan`: every task that would run, in order, with the reasons why.

Uses the same up-to-date checks doit does (each kind's in cpb.tasks.table),
and propagates staleness through the graph itself (doit's `list --status`
does not), so the plan is exactly what `cpb build` will do. Planning writes
nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cpb.graph import closure, ordered
from cpb.naming import split_task
from cpb.tasks.table import kind_of

if TYPE_CHECKING:
    from cpb.project import Project


@dataclass(frozen=True)
class PlannedTask:
    task: str
    pending: bool
    reasons: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        kind, subject = split_task(self.task)
        return {"task": self.task, "kind": kind, "image": subject, "pending": self.pending,
                "reasons": self.reasons}


def default_tasks(project: Project, tasks: Iterable[str]) -> list[str]:
    """The tasks planned when none are asked for (a pod that is down is left out)."""
    result = []
    for task in tasks:
        kind, subject = kind_of(task)
        if kind.in_default_plan(project, subject):
            result.append(task)
    return result


def make_plan(project: Project, targets: Iterable[str] = ()) -> list[PlannedTask]:
    wanted = set(targets)
    selected = (closure(project.graph, wanted) if wanted
                else set(default_tasks(project, project.graph)))
    pending: set[str] = set()
    plan: list[PlannedTask] = []
    for task in ordered(project.graph):
        if task not in selected:
            continue
        kind, subject = kind_of(task)
        if kind.uptodate(project, subject):
            plan.append(PlannedTask(task, False))
            continue
        pending.add(task)
        plan.append(PlannedTask(task, True, kind.reasons(project, subject, pending)))
    return plan
