"""Pods with their inputs resolved: each pod's digest and the manifest podman plays.

A pod's *components* are its spec and the input digests of its containers'
images (plus cpb's pod templates), and for a pod with the stock NATS the
fingerprints of its certificates and of its permissions (issue 14); their hash
is the pod's digest, written into the manifest as the label `io.cpb.pod-digest`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cpb.resolve.digest import digest_of
from cpb.resolve.images import ImageBuild
from cpb.resolve.kube import DIGEST_LABEL_LENGTH, pod_k8s_name, pod_manifest, templates_digest
from cpb.resolve.podtls import PodTls, digest_components, mount_dirs, plan_tls, project_pki
from cpb.spec.model import ProjectSpec


@dataclass(frozen=True)
class PodBuild:
    """One pod of the spec with its inputs resolved."""

    name: str
    k8s_name: str  # the pod's name in podman
    digest: str
    components: dict[str, Any] = field(compare=False)
    manifest: str = field(compare=False, repr=False)
    tls: PodTls | None = field(default=None, compare=False)

    @property
    def label(self) -> str:
        return self.digest[:DIGEST_LABEL_LENGTH]


def resolve_pods(spec: ProjectSpec, images: Mapping[str, ImageBuild]) -> dict[str, PodBuild]:
    return {name: resolve_pod(spec, name, images) for name in spec.pods}


def resolve_pod(spec: ProjectSpec, name: str, images: Mapping[str, ImageBuild]) -> PodBuild:
    """One pod (again, after `cpb up` made or renewed its certificates)."""
    templates = templates_digest()
    pki = project_pki(spec)
    pod = spec.pods[name]
    used = sorted({c.image for c in pod.containers})
    k8s = pod_k8s_name(spec.project, name)
    tls = plan_tls(pod, spec.images)
    components = {
        "spec": digest_of(pod.as_dict())[:16],
        "images": {image: images[image].digest for image in used},
        "volumes": {str(v.host): str(v.host_path) for c in pod.containers
                    for v in c.volumes if v.host_path is not None},
        "templates": templates,
        **(digest_components(pki, tls) if tls else {}),
    }
    digest = digest_of(components)
    refs = {image: images[image].digest_ref for image in used}
    manifest = pod_manifest(spec.project, pod, refs, digest=digest,
                            spec_file=spec.file.name,
                            tls_dirs=mount_dirs(pki, tls, k8s) if tls else None)
    return PodBuild(name=name, k8s_name=k8s, digest=digest, components=components,
                    manifest=manifest, tls=tls)
