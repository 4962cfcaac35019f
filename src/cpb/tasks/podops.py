"""What `cpb down`, `cpb status` and `cpb kube --cluster` do with a project's pods."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from cpb.adapters.runner import CommandFailed
from cpb.errors import BuildError
from cpb.naming import DIGEST_LABEL, digest_tag
from cpb.resolve.kube import cluster_manifest, named_volumes
from cpb.resolve.runtime import KIND_ENV as WORKER_KIND_ENV
from cpb.spec.pods import PodSpec, replica_names
from cpb.tasks.pods import pod_uptodate
from cpb.tasks.regcache import pushed_manifest

if TYPE_CHECKING:
    from cpb.project import Project

log = logging.getLogger(__name__)


def pod_down(project: Project, pod: str, *, volumes: bool = False) -> bool:
    """Stop and remove the pod (and, if asked, its named volumes); False if it was not there."""
    build = project.pods[pod]
    spec = project.spec.pods[pod]
    store = project.pod_store
    existed = build.k8s_name in store.pods()
    try:
        store.remove(build.k8s_name, spec.stop_timeout)
        if volumes:
            store.remove_volumes(named_volumes(project.spec.project, spec))
    except CommandFailed as exc:
        raise BuildError(f"removing pod {build.k8s_name} failed: {exc.tail(3)}") from None
    finally:
        store.invalidate()
    return existed


def pod_status(project: Project, pods: list[str]) -> list[dict[str, Any]]:
    """Each pod: its state, and each container's state, image and image digest."""
    running = project.pod_store.pods()
    containers = project.pod_store.containers(
        [project.pods[p].k8s_name for p in pods if project.pods[p].k8s_name in running])
    used = [c.get("ImageID", "") for rows in containers.values() for c in rows]
    digests = {image_id: labels.get(DIGEST_LABEL, "") for image_id, labels
               in project.store.labels_of(used).items()}
    result = []
    for name in pods:
        build = project.pods[name]
        pod = running.get(build.k8s_name)
        entry: dict[str, Any] = {"pod": name, "name": build.k8s_name,
                                 "state": pod.status if pod else "not running",
                                 "up_to_date": bool(pod and pod_uptodate(project, name)),
                                 "containers": []}
        prefix = build.k8s_name + "-"
        kinds = worker_kinds(project.spec.pods[name])
        mine = containers.get(pod.id, []) if pod else []
        for c in sorted(mine, key=lambda c: c["Names"][0]):
            shown = c["Names"][0]
            image_id = c.get("ImageID", "")
            short_name = shown[len(prefix):] if shown.startswith(prefix) else shown
            entry["containers"].append({
                "name": short_name, "kind": kinds.get(short_name),
                "id": c.get("Id", ""), "state": c.get("State", ""),
                "image": c.get("Image", ""), "image_id": image_id,
                "digest": digests.get(image_id, ""),
            })
        result.append(entry)
    return result


def worker_kinds(pod: PodSpec) -> dict[str, str]:
    """{container name in podman's pod: the kind of tasks it runs} for runtime workers."""
    return {replica: dict(c.env)[WORKER_KIND_ENV]
            for c in pod.containers if WORKER_KIND_ENV in dict(c.env)
            for replica in replica_names(c.name, c.replicas)}


def cluster_image_ref(project: Project, image: str) -> str:
    """How a cluster names an image: by registry manifest digest once pushed.

    Without `registry:` it is the local digest tag (the cluster must get the
    image some other way). With one, it is `<url>/<image>@sha256:...` when
    .cpb/ knows the pushed manifest, else the registry's digest tag, which
    `cpb push` makes exist.
    """
    build = project.images[image]
    tag = digest_tag(build.digest)
    if project.registry is None:
        return f"{build.repository}:{tag}"
    url = project.registry.config.url
    manifest = pushed_manifest(project, image)
    if manifest is not None:
        return f"{url}/{image}@{manifest}"
    log.warning("image %s is not pushed yet: referenced by its digest tag; run `cpb push` "
                "to pin it by manifest digest", image)
    return f"{url}/{image}:{tag}"


def cluster_yaml(project: Project, pod: str) -> str:
    spec = project.spec.pods[pod]
    refs = {c.image: cluster_image_ref(project, c.image) for c in spec.containers}
    return cluster_manifest(project.spec.project, spec, refs, spec_file=project.spec.file.name)
