"""Pods with their inputs resolved: each pod's digest and the manifest podman plays.

A pod's *components* are its spec and the input digests of its containers'
images (plus cpb's pod templates); their hash is the pod's digest, written
into the manifest as the label `io.cpb.pod-digest`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cpb.resolve.digest import digest_of
from cpb.resolve.images import ImageBuild
from cpb.resolve.kube import DIGEST_LABEL_LENGTH, pod_k8s_name, pod_manifest, templates_digest
from cpb.spec.model import ProjectSpec


@dataclass(frozen=True)
class PodBuild:
    """One pod of the spec with its inputs resolved."""

    name: str
    k8s_name: str  # the pod's name in podman
    digest: str
    components: dict[str, Any] = field(compare=False)
    manifest: str = field(compare=False, repr=False)

    @property
    def label(self) -> str:
        return self.digest[:DIGEST_LABEL_LENGTH]


def resolve_pods(spec: ProjectSpec, images: Mapping[str, ImageBuild]) -> dict[str, PodBuild]:
    templates = templates_digest()
    result: dict[str, PodBuild] = {}
    for name, pod in spec.pods.items():
        used = sorted({c.image for c in pod.containers})
        components = {
            "spec": digest_of(pod.as_dict())[:16],
            "images": {image: images[image].digest for image in used},
            "volumes": {str(v.host): str(v.host_path) for c in pod.containers
                        for v in c.volumes if v.host_path is not None},
            "templates": templates,
        }
        digest = digest_of(components)
        refs = {image: images[image].digest_ref for image in used}
        manifest = pod_manifest(spec.project, pod, refs, digest=digest,
                                spec_file=spec.file.name)
        result[name] = PodBuild(name=name, k8s_name=pod_k8s_name(spec.project, name),
                                digest=digest, components=components, manifest=manifest)
    return result
