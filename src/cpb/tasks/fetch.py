"""`fetch:` tasks: a url artifact into the artifact cache, once per distinct checksum."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from cpb.naming import FETCH, task_name
from cpb.tasks.kind import Node, TaskKind
from cpb.tasks.records import only_inputs_of_built_images

if TYPE_CHECKING:
    from cpb.project import Project
    from cpb.spec.model import ProjectSpec


def fetch_uptodate(project: Project, key: str) -> bool:
    if project.cache.has(key):
        return True
    # Like a root file system, an artifact is only an input of builds: when
    # every image using it is built already, downloading it would be wasted.
    return only_inputs_of_built_images(project, task_name(FETCH, key))


def do_fetch(project: Project, key: str) -> None:
    project.cache.fetch(project.downloads[key])


def fetch_reasons(project: Project, key: str, pending: set[str]) -> list[str]:
    download = project.downloads[key]
    return [f"artifact {download.shown} is not in the cache {project.cache.root}"]


def _fetch_nodes(spec: ProjectSpec) -> Iterator[Node]:
    keys = {a.key for image in spec.images.values() for a in image.artifacts if a.url is not None}
    return (Node(key) for key in sorted(keys))


FETCH_KIND = TaskKind(FETCH, "artifact", _fetch_nodes, fetch_uptodate, do_fetch, fetch_reasons)
