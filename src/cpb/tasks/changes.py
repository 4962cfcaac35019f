"""Why an image is rebuilt: its inputs now against the record of its last build."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from cpb.naming import BUILD, task_name

if TYPE_CHECKING:
    from cpb.project import Project


def build_reasons(project: Project, image: str, pending: set[str]) -> list[str]:
    build = project.images[image]
    stamp = project.state.read_stamp(task_name(BUILD, image))
    old: dict[str, Any] = (stamp or {}).get("components") or {}
    if not old:
        return ["never built in this project (no record in .cpb/)"]
    if not well_formed(old):
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
            if task_name(BUILD, parent) in pending:
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


def well_formed(old: Any) -> bool:
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
