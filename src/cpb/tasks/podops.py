"""What `cpb down`, `cpb status` and `cpb kube --cluster` do with a project's pods."""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from cpb.adapters.pods import container_health
from cpb.adapters.runner import CommandFailed
from cpb.errors import BuildError
from cpb.naming import DIGEST_LABEL, digest_tag
from cpb.resolve.kube import LABEL_DIGEST, cluster_manifest, named_volumes
from cpb.resolve.podtls import container_files, project_pki, remove_pod_files, secret_names
from cpb.resolve.runtime import KIND_ENV as WORKER_KIND_ENV
from cpb.spec.pods import PodSpec, replica_names
from cpb.tasks.pods import pod_uptodate
from cpb.tasks.regcache import pushed_manifest

if TYPE_CHECKING:
    from cpb.project import Project

log = logging.getLogger(__name__)

# podman's pod states that mean a container of the pod is not as it should be
UNHEALTHY_POD_STATES = ("Degraded", "Error")


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
    # the pod's copies of its TLS files go with it (the key folder keeps the originals)
    remove_pod_files(project_pki(project.spec), build.k8s_name)
    return existed


def pod_status(project: Project, pods: list[str], *, log_lines: int = 0,
               now: datetime | None = None) -> list[dict[str, Any]]:
    """Each pod: its state, whether it is up to date and healthy, and each container's
    state, restarts (a crash loop as such), image, image digest and, with
    `log_lines`, the last lines of its log."""
    store = project.pod_store
    running = store.pods()
    containers = store.containers(
        [project.pods[p].k8s_name for p in pods if project.pods[p].k8s_name in running])
    inspected = store.inspect(sorted(c.get("Id", "") for rows in containers.values()
                                     for c in rows))
    now = now or datetime.now(timezone.utc)
    used = [c.get("ImageID", "") for rows in containers.values() for c in rows]
    digests = {image_id: labels.get(DIGEST_LABEL, "") for image_id, labels
               in project.store.labels_of(used).items()}
    result = []
    for name in pods:
        build = project.pods[name]
        pod = running.get(build.k8s_name)
        prefix = build.k8s_name + "-"
        kinds = worker_kinds(project.spec.pods[name])
        mine = containers.get(pod.id, []) if pod else []
        entries = []
        for c in sorted(mine, key=lambda c: c["Names"][0]):
            shown = c["Names"][0]
            image_id = c.get("ImageID", "")
            health = container_health(inspected.get(c.get("Id", ""), {}), now)
            short_name = shown[len(prefix):] if shown.startswith(prefix) else shown
            entry = {
                "name": short_name, "kind": kinds.get(short_name),
                "id": c.get("Id", ""), "state": health.state or c.get("State", ""),
                "status": health.describe() or c.get("State", ""),
                "restarts": health.restarts, "exit_code": health.exit_code,
                "crash_loop": health.crash_looping, "stable": health.stable,
                "failed": health.failed,
                "image": c.get("Image", ""), "image_id": image_id,
                "digest": digests.get(image_id, ""),
            }
            if log_lines:
                entry["logs"] = store.log_tail(c.get("Id", shown), log_lines)
            entries.append(entry)
        # made from the spec's current inputs (in whatever state)
        current = bool(pod and pod.labels.get(LABEL_DIGEST) == build.label)
        stable = bool(entries) and all(e["stable"] for e in entries)
        state = pod.status if pod else "not running"
        result.append({
            "pod": name, "name": build.k8s_name, "state": state, "current": current,
            # what `cpb up` checks (running, current, all containers there), and
            # every container running and stable
            "up_to_date": bool(pod and pod_uptodate(project, name)) and stable,
            "healthy": pod is None or (state not in UNHEALTHY_POD_STATES
                                       and not any(e["failed"] for e in entries)),
            "containers": entries,
        })
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


def cluster_yaml(project: Project, pod: str, *, with_secrets: bool = False) -> str:
    """The cluster's manifests. The NATS back-plane's TLS files are Secrets referenced
    by name; with `with_secrets` the Secrets themselves (private keys) are emitted
    too, the certificates made or renewed first."""
    spec = project.spec.pods[pod]
    refs = {c.image: cluster_image_ref(project, c.image) for c in spec.containers}
    tls = project.pods[pod].tls
    names = secret_names(pod, tls) if tls else {}
    secrets = None
    if tls and with_secrets:
        pki = project_pki(project.spec)
        pki.ensure(tls.client_roles, tls.server_names)
        secrets = {names[c]: container_files(pki, tls, c) for c, _ in tls.roles}
    return cluster_manifest(project.spec.project, spec, refs, spec_file=project.spec.file.name,
                            tls_secrets=names, secrets=secrets)
