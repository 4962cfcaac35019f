"""`cpb plan`: every task that would run, in order, with the reasons why.

Uses the same up-to-date checks doit does, and propagates staleness through
the graph itself (doit's `list --status` does not), so the plan is exactly
what `cpb build` will do.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from cpb.graph import closure, ordered, split_task
from cpb.project import Project
from cpb.tasks.images import UPTODATE
from cpb.tasks.pods import idle_pod_tasks, pod_reasons
from cpb.tasks.push import cache_hit, cache_reasons, push_reasons


@dataclass(frozen=True)
class PlannedTask:
    task: str
    pending: bool
    reasons: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        kind, image = split_task(self.task)
        return {"task": self.task, "kind": kind, "image": image, "pending": self.pending,
                "reasons": self.reasons}


def make_plan(project: Project, targets: Iterable[str] = ()) -> list[PlannedTask]:
    wanted = set(targets)
    selected = closure(project.graph, wanted) if wanted else set(project.graph)
    if not wanted:
        selected -= idle_pod_tasks(project)  # a pod that is down is only planned when asked
    pending: set[str] = set()
    plan: list[PlannedTask] = []
    for task in ordered(project.graph):
        if task not in selected:
            continue
        kind, image = split_task(task)
        if UPTODATE[kind](project, image):
            plan.append(PlannedTask(task, False))
            continue
        pending.add(task)
        plan.append(PlannedTask(task, True, reasons(project, task, pending)))
    return plan


def reasons(project: Project, task: str, pending: set[str]) -> list[str]:
    kind, image = split_task(task)
    if kind == "fetch":
        download = project.downloads[image]
        return [f"artifact {download.shown} is not in the cache {project.cache.root}"]
    if kind == "pod":
        return pod_reasons(project, image, pending)
    build = project.images[image]
    if kind == "render":
        exists = project.state.render_path(image).exists()
        return ["rendered descriptor is out of date" if exists else "descriptor not rendered yet"]
    if kind == "rootfs":
        return [f"root file system image {build.rootfs_ref} is not in local storage"]
    if kind == "push":
        return push_reasons(project, image)
    if kind == "tag":
        if f"build:{image}" in pending:
            return [f"image {image} will be {'pulled' if cache_hit(project, image) else 'built'}"]
        return [f"tag {build.version_ref} does not point at {build.digest_ref}"]
    return build_reasons(project, image, pending)


def build_reasons(project: Project, image: str, pending: set[str]) -> list[str]:
    build = project.images[image]
    pulled = cache_reasons(project, image)
    if pulled:
        return pulled
    stamp = project.state.read_stamp(f"build:{image}")
    old: dict[str, Any] = (stamp or {}).get("components") or {}
    if not old:
        return ["never built in this project (no record in .cpb/)"]
    if not _well_formed(old):
        return ["the record of the last build in .cpb/ is damaged"]
    if stamp and stamp.get("digest") == build.digest:
        return [f"image missing from local storage ({build.digest_ref})"]
    found = list(_component_changes(old, build.components, image, pending))
    return found or ["inputs changed (input digest differs from the last build)"]


def _component_changes(old: dict[str, Any], new: dict[str, Any], image: str,
                       pending: set[str]) -> Iterable[str]:
    old_base, new_base = old.get("base", {}), new["base"]
    if old_base != new_base:
        if "image" in new_base:
            parent = new_base["image"]
            if f"build:{parent}" in pending:
                yield f"parent image {parent} will be rebuilt"
            else:
                yield f"parent image {parent} changed"
        elif "rootfs" in new_base:
            yield "root file system recipe changed"
        else:
            yield f"base image {new_base['ref']} changed (id {_short_id(new_base.get('id'))})"
    old_spec = old.get("spec", {})
    for name, value in new["spec"].items():
        if old_spec.get(name) != value:
            yield f"spec field images.{image}.{name} changed"
    yield from _dict_changes("module file", old.get("files", {}), new["files"])
    yield from _dict_changes("artifact", old.get("artifacts", {}), new["artifacts"])
    if old.get("template") != new["template"]:
        yield "cpb's descriptor template changed"
    if old.get("cekit") != new["cekit"]:
        yield f"cekit version changed ({old.get('cekit')} -> {new['cekit']})"
    if old.get("flags") != new["flags"]:
        yield "builder flags changed"


def _well_formed(old: Any) -> bool:
    """A stamp written by this version of cpb (a damaged one must not crash the plan)."""
    return (isinstance(old, dict)
            and all(isinstance(old.get(k, {}), dict)
                    for k in ("base", "spec", "files", "artifacts"))
            and all(isinstance(v, str) for k in ("files", "artifacts")
                    for v in old.get(k, {}).values()))


def _dict_changes(what: str, old: dict[str, str], new: dict[str, str]) -> Iterable[str]:
    for name in sorted(set(old) | set(new)):
        if name not in old:
            yield f"{what} {name} added"
        elif name not in new:
            yield f"{what} {name} removed"
        elif old[name] != new[name]:
            yield f"{what} {name} changed"


def _short_id(image_id: str | None) -> str:
    return image_id[:12] if image_id else "missing"
