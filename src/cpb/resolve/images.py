"""Input digests: what each image is made of, hashed as a Merkle tree.

An image's *components* are everything that can change its bytes: the
rendered descriptor, the spec fields behind it, the template, every module
file, every artifact's checksum, its base (the parent's input digest, the
root file system's recipe, or an external image's id), cekit's version and
the builder flags. The input digest is the hash of the components; a
parent's digest is a component of its children, so a change anywhere below
an image changes that image's digest, and nothing else's.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cpb.adapters.cekit import BUILDER_FLAGS
from cpb.adapters.podman import Snapshot, local_ref
from cpb.adapters.rootfs import recipe
from cpb.errors import SpecError
from cpb.naming import digest_tag
from cpb.resolve.digest import FileHasher, digest_of, hash_file, sha256_text
from cpb.resolve.render import (
    GENERATED_DIR,
    GENERATED_LABEL,
    fill_paths,
    fill_placeholders,
    render_image,
    template_source,
)
from cpb.resolve.rendermemo import RenderMemo
from cpb.spec.model import ArtifactSpec, ImageSpec, ProjectSpec
from cpb.state import StateDir

# Spec fields whose change is named in `cpb plan` reasons.
SPEC_FIELDS = ("version", "description", "modules", "packages", "packages_manager", "artifacts",
               "env", "labels", "ports", "user", "workdir", "cmd", "entrypoint", "cekit")


@dataclass(frozen=True)
class ImageBuild:
    """One image of the spec with its inputs resolved."""

    name: str
    repository: str  # "<project>/<image>", stored by podman as localhost/<project>/<image>
    version: str
    digest: str
    components: dict[str, Any] = field(compare=False)
    descriptor: str = field(compare=False, repr=False)
    # {path below the render folder: text} of the modules cpb generates for the image
    generated: dict[str, str] = field(default_factory=dict, compare=False, repr=False)
    parent: str | None = None
    base_ref: str | None = None
    rootfs_ref: str | None = None
    rootfs_digest: str | None = None

    @property
    def digest_ref(self) -> str:
        return local_ref(f"{self.repository}:{digest_tag(self.digest)}")

    @property
    def version_ref(self) -> str:
        return local_ref(f"{self.repository}:{self.version}")


def resolve_images(spec: ProjectSpec, order: list[str], snapshot: Callable[[], Snapshot],
                   hasher: FileHasher, artifact_path: Callable[[str], Path] | None = None,
                   *, cekit: str, renders: RenderMemo | None = None) -> dict[str, ImageBuild]:
    """ImageBuild for every image, parents before children (`order`).

    `cekit` is cekit's version (it stamps every image). `artifact_path(key)`
    is where a url artifact is in the artifact cache; it only fills the
    descriptor's paths, never the digest (the declared checksum is what
    identifies a url artifact, so no download is needed to plan). `renders`:
    what earlier runs rendered (cpb.resolve.rendermemo); none, render all.
    """
    template_hash = sha256_text(template_source())[:16]
    renders = renders if renders is not None else RenderMemo()
    resolved: dict[str, ImageBuild] = {}
    for name in order:
        resolved[name] = _resolve(spec, spec.images[name], resolved, snapshot, hasher,
                                  template_hash, cekit, artifact_path or _no_cache, renders)
    return resolved


def _no_cache(key: str) -> Path:
    return Path("/nonexistent/cpb-artifact-cache") / key


def artifact_sum(artifact: ArtifactSpec, hasher: FileHasher,
                 project_root: Path | None = None) -> str:
    """What identifies an artifact's bytes: its sha256, or `<algorithm>-<hex>` as declared.

    A local file is hashed (and checked against any checksum it declares); a
    url artifact is identified by its declared checksum alone.
    """
    if artifact.path is None:
        return artifact.key
    actual = hasher.hash(artifact.path)
    for algorithm, expected in artifact.checksums:
        got = actual if algorithm == "sha256" else hash_file(artifact.path, algorithm)
        if got != expected:
            # The actual sum of a file outside the project is not the project's
            # to learn: a spec could probe any host file's hash with it.
            inside = project_root is not None and artifact.path.is_relative_to(
                os.path.realpath(project_root))
            shown = f", got {got}" if inside else ""
            raise SpecError(f"artifact {artifact.name} ({artifact.rel}): {algorithm} mismatch: "
                            f"expected {expected}{shown}")
    return actual


def _located_sum(spec: ProjectSpec, artifact: ArtifactSpec, hasher: FileHasher) -> str:
    """artifact_sum, its error located at the artifact's `path:` in cpb.yaml."""
    try:
        return artifact_sum(artifact, hasher, spec.root)
    except SpecError as exc:
        if exc.file or not artifact.at:
            raise
        field_path = f"{artifact.at}.path"
        file, line, column = spec.where(field_path)
        raise SpecError(exc.reason, file=file, line=line, column=column,
                        field=field_path) from None


def _resolve(spec: ProjectSpec, image: ImageSpec, done: dict[str, ImageBuild],
             snapshot: Callable[[], Snapshot], hasher: FileHasher, template_hash: str,
             cekit: str, artifact_path: Callable[[str], Path],
             renders: RenderMemo) -> ImageBuild:
    repository = f"{spec.project}/{image.name}"
    rootfs_ref = rootfs_digest = None
    base: dict[str, Any]
    if image.parent is not None:
        parent = done[image.parent]
        from_ref, base = parent.digest_ref, {"image": image.parent, "digest": parent.digest}
    elif image.rootfs is not None:
        tar_sum = hasher.hash(image.rootfs.tar) if image.rootfs.tar else None
        rootfs_digest = digest_of(recipe(image.rootfs, tar_sum))
        rootfs_ref = local_ref(f"{spec.project}/rootfs/{image.name}:{digest_tag(rootfs_digest)}")
        from_ref, base = rootfs_ref, {"rootfs": rootfs_digest}
    else:
        assert image.base_ref is not None
        from_ref = image.base_ref
        base = {"ref": image.base_ref, "id": snapshot().image_id(image.base_ref)}

    artifact_sums = {a.name: _located_sum(spec, a, hasher) for a in image.artifacts}
    paths: dict[str, str | Path] = {
        f"artifact:{a.name}": a.path if a.path is not None else artifact_path(a.key)
        for a in image.artifacts}
    paths[GENERATED_LABEL] = StateDir(spec.root).render_path(image.name).parent / GENERATED_DIR
    files: dict[str, str] = {}
    for module in image.modules:
        paths[module.label] = module.real or os.path.realpath(module.path)
        for file in module.files:
            files[file.shown] = hasher.hash(file.path, file.stat)
    text, generated = render_image(image, renders, templates=template_hash,
                                   project=spec.project, repository=repository,
                                   from_ref=from_ref, spec_file=spec.file.name,
                                   artifact_sums=artifact_sums)
    components = {
        "spec": {f: digest_of(_field_value(image, f))[:16] for f in SPEC_FIELDS},
        "template": template_hash,
        "descriptor": sha256_text(text),
        # derived from the spec fields above, so a change here comes with a reason there
        "generated": {rel: sha256_text(body) for rel, body in generated.items()},
        "files": files,
        "artifacts": artifact_sums,
        "base": base,
        "cekit": cekit,
        "flags": list(BUILDER_FLAGS),
    }
    digest = digest_of(components)
    return ImageBuild(
        name=image.name, repository=repository, version=image.version, digest=digest,
        components=components,
        descriptor=fill_placeholders(text, digest, paths, image.cekit),
        generated={rel: fill_paths(body, paths) for rel, body in generated.items()},
        parent=image.parent, base_ref=image.base_ref,
        rootfs_ref=rootfs_ref, rootfs_digest=rootfs_digest)


def _field_value(image: ImageSpec, name: str) -> Any:
    value = getattr(image, name)
    if name == "modules":
        return [m.name for m in value]
    if name == "artifacts":
        return [[a.name, a.target, a.dest] for a in value]
    if name == "cekit":
        return dict(value)
    return value
