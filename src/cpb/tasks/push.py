"""`push:` tasks: an image to the spec's registry, under its digest tag and its version.

The digest tag `cpb-<digest12>` is pushed unless the registry has it (see
cpb.tasks.regcache: it is the cache key); the version tag is then pointed at
the same manifest, so both name exactly the same bytes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from cpb.naming import PUSH, TAG, digest_tag, task_name
from cpb.tasks.common import fresh_log
from cpb.tasks.kind import Node, TaskKind
from cpb.tasks.regcache import project_registry, pushed_manifest

if TYPE_CHECKING:
    from cpb.project import Project
    from cpb.spec.model import ProjectSpec


def push_uptodate(project: Project, image: str) -> bool:
    """Pushed when the record of the last push is for these inputs and the
    registry's version tag still names that manifest: one question."""
    if project.registry is None:
        return True
    build = project.images[image]
    manifest = pushed_manifest(project, image)
    if manifest is None:
        return False
    return bool(project.registry.manifest_digest(image, build.version) == manifest)


def push_reasons(project: Project, image: str, pending: set[str]) -> list[str]:
    build = project.images[image]
    ref = project_registry(project).config.ref(image, build.version)
    if pushed_manifest(project, image) is not None:
        return [f"{ref} does not name the manifest of these inputs"]
    return [f"not pushed from here yet (pushed only if {digest_tag(build.digest)} is missing)"]


def do_push(project: Project, image: str) -> None:
    """Push the digest tag unless the registry has it, then point the version tag at it."""
    registry, build = project_registry(project), project.images[image]
    task = task_name(PUSH, image)
    tag = digest_tag(build.digest)
    manifest = registry.manifest_digest(image, tag)
    pushed = manifest is None
    if manifest is None:
        from cpb.adapters.transfer import push_from_storage  # with ssl: only to push

        manifest = push_from_storage(
            project.runner, registry, build.digest_ref, registry.config.ref(image, tag),
            project.state.build_dir(image) / "pushed.digest", fresh_log(project.state, task))
    # Tags are added by manifest digest, so both name exactly the same bytes.
    if registry.manifest_digest(image, build.version) != manifest:
        registry.add_tag(image, manifest, build.version)
    project.state.write_stamp(task, {
        "digest": build.digest, "manifest": manifest, "pushed": pushed,
        "tags": [registry.config.ref(image, t) for t in (tag, build.version)]})


def _push_nodes(spec: ProjectSpec) -> Iterator[Node]:
    if spec.registry is None:
        return iter(())
    return (Node(name, (task_name(TAG, name),)) for name in spec.images)


PUSH_KIND = TaskKind(PUSH, "image", _push_nodes, push_uptodate, do_push, push_reasons)
