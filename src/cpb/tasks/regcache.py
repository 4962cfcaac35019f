"""The registry as the build cache every machine shares.

Image `<image>` is in the registry under `<url>/<image>:cpb-<digest12>`,
named by its input digest (the cache key). A build whose digest tag is
already there is pulled and tagged locally instead of run, so a fresh CI
runner against a warm registry builds nothing.

Nothing here asks the registry anything when no registry is configured, and
each registry question is asked at most once per image and run.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from cpb.errors import BuildError
from cpb.naming import BUILD, DIGEST_LABEL, PUSH, digest_tag, task_name
from cpb.tasks.common import fresh_log
from cpb.tasks.records import image_built, record_build

if TYPE_CHECKING:
    from cpb.adapters.registry import Registry
    from cpb.project import Project

log = logging.getLogger(__name__)


def project_registry(project: Project) -> Registry:
    """The spec's registry, for code that runs only when there is one."""
    assert project.registry is not None
    return project.registry


def cache_hit(project: Project, image: str) -> str | None:
    """The manifest digest of `<url>/<image>:cpb-<digest12>`, if the registry can
    stand in for building `image` (a registry is configured and the cache is on)."""
    registry = project.registry
    if registry is None or not project.registry_cache:
        return None
    # Ask about every image that is not built here in one go, in parallel:
    # a plan or a fresh runner needs all those answers anyway.
    registry.prefetch((name, digest_tag(build.digest)) for name, build in project.images.items()
                      if not image_built(project, name))
    return registry.known_digest(image, digest_tag(project.images[image].digest))


def pull_instead_of_build(project: Project, image: str) -> bool:
    """Pull `image` from the registry and tag it as if built; False if not there."""
    manifest = cache_hit(project, image)
    if manifest is None:
        return False
    task = task_name(BUILD, image)
    log_file = fresh_log(project.state, task)
    registry, build = project_registry(project), project.images[image]
    source = f"{registry.config.url}/{image}@{manifest}"
    from cpb.adapters.transfer import pull_into_storage  # with ssl: only with a registry

    try:
        pull_into_storage(project.runner, registry, source, build.digest_ref, log_file)
    finally:
        project.store.refresh(build.digest_ref)  # with its labels, checked next
    snap = project.store.snapshot()
    if snap.label(build.digest_ref, DIGEST_LABEL) != build.digest:
        raise BuildError(f"{source} does not carry {DIGEST_LABEL}={build.digest}; "
                         "remove that tag from the registry, or build with --no-registry-cache")
    log.info("%s pulled from %s instead of built", task, source)
    record_build(project, image, snap.image_id(build.digest_ref), pulled=source)
    return True


def cache_reasons(project: Project, image: str) -> list[str]:
    """The `cpb plan` reason for a build the registry will stand in for."""
    if cache_hit(project, image) is None:
        return []
    registry = project_registry(project)
    return [f"in registry: will pull, not build "
            f"({registry.config.ref(image, digest_tag(project.images[image].digest))})"]


def pushed_manifest(project: Project, image: str) -> str | None:
    """The manifest this registry has for the current inputs, as far as .cpb/ knows:
    pushed from here, or pulled from there instead of built (a fresh runner)."""
    build = project.images[image]
    stamp = project.state.read_stamp(task_name(PUSH, image)) or {}
    if stamp.get("digest") == build.digest and stamp.get("manifest"):
        return str(stamp["manifest"])
    built = project.state.read_stamp(task_name(BUILD, image)) or {}
    source = str(built.get("pulled", ""))
    prefix = f"{project_registry(project).config.url}/{image}@"
    if built.get("digest") == build.digest and source.startswith(prefix):
        return source[len(prefix):]
    return None
