"""The url artifacts of a spec, one `Download` per distinct checksum (a `fetch:` task each)."""

from __future__ import annotations

from collections.abc import Iterable

from cpb.adapters.artifacts import Download
from cpb.spec.model import ArtifactSpec, ProjectSpec


def collect_downloads(spec: ProjectSpec, images: Iterable[str] | None = None
                      ) -> dict[str, Download]:
    """The distinct url artifacts of the spec (or of `images`), by cache key."""
    found: dict[str, list[ArtifactSpec]] = {}
    for name in sorted(spec.images if images is None else images):
        for artifact in spec.images[name].artifacts:
            if artifact.url is not None:
                found.setdefault(artifact.key, []).append(artifact)
    result = {}
    for key, artifacts in sorted(found.items()):
        checksums: dict[str, str] = {}
        for artifact in artifacts:
            for algorithm, value in artifact.checksums:
                checksums.setdefault(algorithm, value)
        sizes = [a.size for a in artifacts if a.size is not None]
        result[key] = Download(
            key=key, checksums=tuple(checksums.items()),
            urls=tuple(dict.fromkeys(a.url for a in artifacts if a.url)),
            names=tuple(dict.fromkeys(a.name for a in artifacts)),
            size=min(sizes) if sizes else None)
    return result
