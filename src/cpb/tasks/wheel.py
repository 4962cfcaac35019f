"""`wheel:` tasks: a Python wheel cpb makes itself (the runtime's) into the artifact cache.

The wheel's bytes, and so its sha256, are known when the spec is resolved
(cpb.resolve.runtime); the task only writes them into the content-addressed
cache, where the image's build finds them like a downloaded artifact.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from cpb.naming import WHEEL, task_name
from cpb.resolve.runtime import WHEEL_SUBJECT, runtime_wheel
from cpb.tasks.kind import Node, TaskKind
from cpb.tasks.records import only_inputs_of_built_images

if TYPE_CHECKING:
    from cpb.project import Project
    from cpb.spec.model import ProjectSpec


def _made_by(subject: str) -> tuple[str, bytes]:
    if subject != WHEEL_SUBJECT:  # the one wheel cpb knows how to make
        raise ValueError(f"no wheel {subject!r}")
    wheel = runtime_wheel()
    return wheel.sha256, wheel.data


def wheel_uptodate(project: Project, subject: str) -> bool:
    key, _ = _made_by(subject)
    if project.cache.has(key):
        return True
    return only_inputs_of_built_images(project, task_name(WHEEL, subject))


def do_wheel(project: Project, subject: str) -> None:
    key, data = _made_by(subject)
    project.cache.store(key, data)


def wheel_reasons(project: Project, subject: str, pending: set[str]) -> list[str]:
    wheel = runtime_wheel()
    return [f"the runtime's wheel {wheel.name} (sha256 {wheel.sha256[:12]}) is not in the "
            f"artifact cache {project.cache.root}"]


def _wheel_nodes(spec: ProjectSpec) -> Iterator[Node]:
    made = {a.made_by for image in spec.images.values() for a in image.artifacts if a.made_by}
    return (Node(subject) for subject in sorted(made))


WHEEL_KIND = TaskKind(WHEEL, "wheel", _wheel_nodes, wheel_uptodate, do_wheel, wheel_reasons)
