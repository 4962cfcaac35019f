"""`push:` tasks, and the registry as the build cache every machine shares.

Image `<image>` goes to `<url>/<image>` under two tags: `cpb-<digest12>`,
named by its input digest (the cache key), and its version. A build whose
digest tag is already in the registry is pulled and tagged locally instead
of run, so a fresh CI runner against a warm registry builds nothing.

Nothing here asks the registry anything when no registry is configured, and
each registry question is asked at most once per image and run.
"""

from __future__ import annotations

import logging
from pathlib import Path

from cpb.adapters.podman import DIGEST_LABEL, PODMAN
from cpb.adapters.registry import Registry, RegistryUnreachable
from cpb.adapters.runner import CommandFailed
from cpb.errors import BuildError
from cpb.project import Project
from cpb.resolve.digest import short
from cpb.resolve.images import ImageBuild
from cpb.state import fresh_file

log = logging.getLogger(__name__)
SKOPEO = "skopeo"
TRANSFER_TIMEOUT = 1800  # seconds for one image's push or pull: bounded, never a hang


def digest_tag(build: ImageBuild) -> str:
    return f"cpb-{short(build.digest)}"


def _registry(project: Project) -> Registry:
    assert project.registry is not None
    return project.registry


# -- the registry as the cache ------------------------------------------------

def cache_hit(project: Project, image: str) -> str | None:
    """The manifest digest of `<url>/<image>:cpb-<digest12>`, if the registry can
    stand in for building `image` (a registry is configured and the cache is on)."""
    registry = project.registry
    if registry is None or not project.registry_cache:
        return None
    # Ask about every image that is not built here in one go, in parallel:
    # a plan or a fresh runner needs all those answers anyway.
    registry.prefetch((name, digest_tag(build)) for name, build in project.images.items()
                      if not project.built(name))
    return registry.known_digest(image, digest_tag(project.images[image]))


def pull_instead_of_build(project: Project, image: str) -> bool:
    """Pull `image` from the registry and tag it as if built; False if not there."""
    manifest = cache_hit(project, image)
    if manifest is None:
        return False
    log_file = _fresh_log(project, f"build:{image}")
    registry, build = _registry(project), project.images[image]
    source = f"{registry.config.url}/{image}@{manifest}"
    # skopeo copies straight into local storage under the local name: one
    # process, and no `<url>/...` name left behind in local storage.
    args = [SKOPEO, "copy", "--quiet", f"--src-tls-verify={_flag(registry)}",
            f"docker://{source}", f"containers-storage:{build.digest_ref}"]
    try:
        _transfer(project, args, log_file, f"pulling {source}")
    finally:
        project.store.refresh(build.digest_ref)  # with its labels, checked next
    snap = project.store.snapshot()
    if snap.label(build.digest_ref, DIGEST_LABEL) != build.digest:
        raise BuildError(f"build:{image}: {source} does not carry {DIGEST_LABEL}={build.digest}; "
                         "remove that tag from the registry, or build with --no-registry-cache")
    log.info("build:%s pulled from %s instead of built", image, source)
    project.record_build(image, snap.image_id(build.digest_ref), pulled=source)
    return True


def cache_reasons(project: Project, image: str) -> list[str]:
    """The `cpb plan` reason for a build the registry will stand in for."""
    if cache_hit(project, image) is None:
        return []
    registry = _registry(project)
    return [f"in registry: will pull, not build "
            f"({registry.config.ref(image, digest_tag(project.images[image]))})"]


# -- push: tasks -----------------------------------------------------------------

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


def pushed_manifest(project: Project, image: str) -> str | None:
    """The manifest this registry has for the current inputs, as far as .cpb/ knows:
    pushed from here, or pulled from there instead of built (a fresh runner)."""
    build = project.images[image]
    stamp = project.state.read_stamp(f"push:{image}") or {}
    if stamp.get("digest") == build.digest and stamp.get("manifest"):
        return str(stamp["manifest"])
    built = project.state.read_stamp(f"build:{image}") or {}
    source = str(built.get("pulled", ""))
    prefix = f"{_registry(project).config.url}/{image}@"
    if built.get("digest") == build.digest and source.startswith(prefix):
        return source[len(prefix):]
    return None


def push_reasons(project: Project, image: str) -> list[str]:
    build = project.images[image]
    ref = _registry(project).config.ref(image, build.version)
    if pushed_manifest(project, image) is not None:
        return [f"{ref} does not name the manifest of these inputs"]
    return [f"not pushed from here yet (pushed only if {digest_tag(build)} is missing)"]


def do_push(project: Project, image: str) -> None:
    """Push the digest tag unless the registry has it, then point the version tag at it."""
    registry, build = _registry(project), project.images[image]
    task = f"push:{image}"
    tag = digest_tag(build)
    manifest = registry.manifest_digest(image, tag)
    pushed = manifest is None
    if manifest is None:
        log_file = _fresh_log(project, task)
        digest_file = project.state.build_dir(image) / "pushed.digest"
        digest_file.parent.mkdir(parents=True, exist_ok=True)
        target = registry.config.ref(image, tag)
        _transfer(project, [PODMAN, "push", "--quiet", f"--tls-verify={_flag(registry)}",
                            "--digestfile", str(digest_file), build.digest_ref,
                            f"docker://{target}"], log_file, f"pushing {target}")
        manifest = digest_file.read_text().strip()
    # Tags are added by manifest digest, so both name exactly the same bytes.
    if registry.manifest_digest(image, build.version) != manifest:
        registry.add_tag(image, manifest, build.version)
    project.state.write_stamp(task, {
        "digest": build.digest, "manifest": manifest, "pushed": pushed,
        "tags": [registry.config.ref(image, t) for t in (tag, build.version)]})


# -- helpers -------------------------------------------------------------------

def _flag(registry: Registry) -> str:
    return "true" if registry.config.tls_verify else "false"


def _fresh_log(project: Project, task: str) -> Path:
    return fresh_file(project.state.log_path(task))


def _transfer(project: Project, args: list[str], log_file: Path, doing: str) -> None:
    registry = _registry(project)
    try:
        project.runner.run(args, log_file=log_file, timeout=TRANSFER_TIMEOUT)
    except CommandFailed as exc:
        if exc.timed_out:
            raise RegistryUnreachable(
                f"registry unreachable: {doing} took over {TRANSFER_TIMEOUT} s; "
                f"images built so far are kept; log: {log_file}") from None
        # The usual cause is the registry going away mid-run: say so plainly.
        try:
            registry.check()
        except RegistryUnreachable as down:
            raise RegistryUnreachable(f"{down} (while {doing}; log: {log_file})") from None
        tail = exc.tail(4).replace("\n", "\n    ")
        raise BuildError(f"{doing} failed: {exc}; log: {log_file}\n    {tail}") from None
