"""`pod:<name>` tasks: a pod of the spec, running under podman.

The running pod is the record: it is up to date when podman has a running
pod of that name with the pod's digest as its label (see cpb.resolve.pods).
So an unchanged spec leaves it alone, and a rebuilt image (whose digest tag
the manifest names) re-creates it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from cpb.adapters.pods import RUNNING, RunningPod
from cpb.adapters.runner import CommandFailed
from cpb.errors import BuildError
from cpb.naming import BUILD, POD, TAG, task_name
from cpb.resolve.kube import LABEL_DIGEST
from cpb.resolve.pods import PodBuild, resolve_pod
from cpb.resolve.podtls import project_pki, write_pod_files
from cpb.spec.pods import check_pod_form, replica_names
from cpb.state import write_bytes_atomic
from cpb.tasks.common import fresh_log, task_failed
from cpb.tasks.kind import Node, TaskKind

if TYPE_CHECKING:
    from cpb.project import Project
    from cpb.spec.model import ProjectSpec


def pod_uptodate(project: Project, pod: str) -> bool:
    """The pod runs, made from these inputs, with every container it should have.

    The last part matters after a `cpb up` killed during `podman kube play`:
    a pod with the new label can be running with only some of its containers.
    """
    build = project.pods[pod]
    running = project.pod_store.pods().get(build.k8s_name)
    if (running is None or running.status != RUNNING
            or running.labels.get(LABEL_DIGEST) != build.label):
        return False
    return expected_containers(project, pod) <= _running_names(running)


def expected_containers(project: Project, pod: str) -> set[str]:
    """The names podman gives the pod's containers: `<pod>-<container>[-<replica>]`."""
    prefix = project.pods[pod].k8s_name + "-"
    return {prefix + shown for c in project.spec.pods[pod].containers
            for shown in replica_names(c.name, c.replicas)}


def _running_names(pod: RunningPod) -> set[str]:
    return {name for c in pod.containers if str(c.get("Status", "")).lower() == "running"
            for name in _names(c)}


def _names(container: dict[str, Any]) -> list[str]:
    names = container.get("Names", [])
    return [names] if isinstance(names, str) else [str(n) for n in names or []]


def pod_is_up(project: Project, pod: str) -> bool:
    """podman has the pod (in any state): `cpb plan` plans only such pods unless asked."""
    return project.pods[pod].k8s_name in project.pod_store.pods()


def do_pod(project: Project, pod: str) -> None:
    """Play the pod's manifest, replacing an older version of the pod."""
    build = project.pods[pod]
    spec = project.spec.pods[pod]
    check_pod_form(spec)  # `doit pod:NAME` comes here without the CLI's check
    task = task_name(POD, pod)
    if build.tls is not None:
        build = _with_certificates(project, pod)
    manifest = project.state.root / "pods" / f"{pod}.yaml"
    write_bytes_atomic(manifest, build.manifest.encode())
    log_file = fresh_log(project.state, task)
    for container in spec.containers:
        for v in container.volumes:
            if v.host_path is not None:
                v.host_path.mkdir(parents=True, exist_ok=True)
    store = project.pod_store
    try:
        if build.k8s_name in store.pods():
            store.remove(build.k8s_name, spec.stop_timeout, log_file)
        if build.tls is not None:
            # each container's own TLS files, afresh (after a rotation, the new ones)
            write_pod_files(project_pki(project.spec), build.tls, spec, build.k8s_name,
                            store.give_files)
        store.play(manifest, log_file)
    except CommandFailed as exc:
        raise task_failed(exc) from None
    finally:
        store.invalidate()
    running = store.pods().get(build.k8s_name)
    if running is None or running.status != RUNNING:
        state = running.status if running else "missing"
        stopped = [c.get("Names", "?") for c in (running.containers if running else [])
                   if c.get("Status") != "running"]
        hint = f"; not running: {', '.join(stopped)} (see `cpb logs pod:{pod}`)" if stopped else ""
        raise BuildError(f"pod {build.k8s_name} is {state} after `podman kube play`"
                         f"{hint}; log: {log_file}")
    project.state.write_stamp(task, {"digest": build.digest, "components": build.components,
                                     "pod_id": running.id})


def _with_certificates(project: Project, pod: str) -> PodBuild:
    """Make or renew the pod's certificates, then its digest and manifest again: the
    pod is labelled with the certificates it really runs with."""
    build = project.pods[pod]
    assert build.tls is not None
    project_pki(project.spec).ensure(build.tls.client_roles, build.tls.server_names)
    build = resolve_pod(project.spec, pod, project.images)
    if isinstance(project.pods, dict):  # what the rest of this run checks against
        project.pods[pod] = build
    return build


def pod_reasons(project: Project, pod: str, pending: set[str]) -> list[str]:
    build = project.pods[pod]
    running = project.pod_store.pods().get(build.k8s_name)
    stamp = project.state.read_stamp(task_name(POD, pod)) or {}
    old: dict[str, Any] = stamp.get("components") or {}
    found: list[str] = []
    if running is None:
        found.append(f"pod {build.k8s_name} is not running")
    elif running.labels.get(LABEL_DIGEST) == build.label:
        missing = sorted(expected_containers(project, pod) - _running_names(running))
        if running.status == RUNNING and missing:
            return [f"pod {build.k8s_name} lacks running containers {', '.join(missing)} "
                    "(an interrupted `cpb up`?)"]
        return [f"pod {build.k8s_name} is {running.status or 'not running'}"]
    if old and stamp.get("digest") != build.digest:
        found.extend(_changes(old, build.components, pending))
    elif running is not None and not old:
        found.append("the running pod was made from other inputs (no record in .cpb/)")
    if running is not None and not found:
        found.append("inputs changed (pod digest differs from the running pod's)")
    return found


def _changes(old: dict[str, Any], new: dict[str, Any], pending: set[str]) -> Iterable[str]:
    old_images, new_images = old.get("images", {}), new["images"]
    for image in sorted(new_images):
        if old_images.get(image) == new_images[image]:
            continue
        if task_name(BUILD, image) in pending:
            yield f"image {image} will be rebuilt"
        elif image not in old_images:
            yield f"image {image} added to the pod"
        else:
            yield f"image {image} changed"
    if old.get("spec") != new["spec"]:
        yield "pod spec changed"
    if old.get("volumes") != new["volumes"]:
        yield "host folders of its volumes moved"
    if old.get("templates") != new["templates"]:
        yield "cpb's pod templates changed"
    if old.get("certificates") != new.get("certificates"):
        yield "certificates renewed"
    if old.get("permissions") != new.get("permissions"):
        yield "permissions changed"


def _pod_nodes(spec: ProjectSpec) -> Iterator[Node]:
    # A pod needs the tagged images of its containers.
    for name, pod in spec.pods.items():
        yield Node(name, tuple(dict.fromkeys(task_name(TAG, c.image) for c in pod.containers)))


POD_KIND = TaskKind(POD, "pod", _pod_nodes, pod_uptodate, do_pod, pod_reasons,
                    in_default_plan=pod_is_up)
