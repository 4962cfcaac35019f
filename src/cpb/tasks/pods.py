"""`pod:<name>` tasks: a pod of the spec, running under podman.

A pod's *components* are its spec and the input digests of its containers'
images (plus cpb's pod templates); their hash is the pod's digest, written
into the manifest as the label `io.cpb.pod-digest`. The running pod is the
record: it is up to date when podman has a running pod of that name with
that label. So an unchanged spec leaves it alone, and a rebuilt image (whose
digest tag the manifest names) re-creates it.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cpb.adapters.podman import PODMAN
from cpb.adapters.runner import CommandFailed, Runner
from cpb.errors import BuildError, EnvironmentProblem
from cpb.resolve.digest import digest_of, short
from cpb.resolve.kube import (
    DIGEST_LABEL_LENGTH,
    LABEL_DIGEST,
    LABEL_PROJECT,
    cluster_manifest,
    named_volumes,
    pod_k8s_name,
    pod_manifest,
    templates_digest,
)
from cpb.state import write_bytes_atomic

if TYPE_CHECKING:
    from cpb.project import Project
    from cpb.resolve.images import ImageBuild
    from cpb.spec.model import ProjectSpec

log = logging.getLogger(__name__)
RUNNING = "Running"


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


def cluster_image_ref(project: Project, image: str) -> str:
    """How a cluster names an image: by registry manifest digest once pushed.

    Without `registry:` it is the local digest tag (the cluster must get the
    image some other way). With one, it is `<url>/<image>@sha256:...` when
    .cpb/ knows the pushed manifest, else the registry's digest tag, which
    `cpb push` makes exist.
    """
    build = project.images[image]
    if project.registry is None:
        return f"{build.repository}:cpb-{short(build.digest)}"
    from cpb.tasks.push import pushed_manifest  # push imports project, which imports this module

    url = project.registry.config.url
    manifest = pushed_manifest(project, image)
    if manifest is not None:
        return f"{url}/{image}@{manifest}"
    log.warning("image %s is not pushed yet: referenced by its digest tag; run `cpb push` "
                "to pin it by manifest digest", image)
    return f"{url}/{image}:cpb-{short(build.digest)}"


def cluster_yaml(project: Project, pod: str) -> str:
    spec = project.spec.pods[pod]
    refs = {c.image: cluster_image_ref(project, c.image) for c in spec.containers}
    return cluster_manifest(project.spec.project, spec, refs, spec_file=project.spec.file.name)


# -- what podman runs ---------------------------------------------------------

@dataclass
class RunningPod:
    name: str
    id: str
    status: str
    labels: dict[str, str]
    containers: list[dict[str, Any]]  # podman's entries: Id, Names, Status


class PodStore:
    """The pods of one project that podman has, asked for once per run."""

    def __init__(self, runner: Runner, project: str) -> None:
        self.runner, self.project = runner, project
        self._pods: dict[str, RunningPod] | None = None
        self._lock = threading.Lock()

    def pods(self) -> dict[str, RunningPod]:
        with self._lock:
            if self._pods is None:
                self._pods = self._query()
            return self._pods

    def invalidate(self) -> None:
        with self._lock:
            self._pods = None

    def _query(self) -> dict[str, RunningPod]:
        args = [PODMAN, "pod", "ps", "--format", "json",
                "--filter", f"label={LABEL_PROJECT}={self.project}"]
        try:
            out = self.runner.run(args, timeout=120)
        except CommandFailed as exc:
            raise EnvironmentProblem(f"`podman pod ps` failed: {exc.tail(3)}") from None
        found: dict[str, RunningPod] = {}
        for entry in json.loads(out or "[]") or []:
            pod = RunningPod(name=entry.get("Name", ""), id=entry.get("Id", ""),
                             status=entry.get("Status", ""),
                             labels=entry.get("Labels") or {},
                             containers=entry.get("Containers") or [])
            found[pod.name] = pod
        return found


def pod_store(project: Project) -> PodStore:
    if project.pod_store is None:
        project.pod_store = PodStore(project.runner, project.spec.project)
    return project.pod_store


# -- the task -----------------------------------------------------------------

def pod_uptodate(project: Project, pod: str) -> bool:
    build = project.pods[pod]
    running = pod_store(project).pods().get(build.k8s_name)
    return (running is not None and running.status == RUNNING
            and running.labels.get(LABEL_DIGEST) == build.label)


def do_pod(project: Project, pod: str) -> None:
    """Play the pod's manifest, replacing an older version of the pod."""
    build = project.pods[pod]
    spec = project.spec.pods[pod]
    task = f"pod:{pod}"
    manifest = project.state.root / "pods" / f"{pod}.yaml"
    write_bytes_atomic(manifest, build.manifest.encode())
    log_file = project.state.log_path(task)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    log_file.write_bytes(b"")
    for volume in spec.containers:
        for v in volume.volumes:
            if v.host_path is not None:
                v.host_path.mkdir(parents=True, exist_ok=True)
    store = pod_store(project)
    try:
        if build.k8s_name in store.pods():
            _remove(project.runner, build.k8s_name, spec.stop_timeout, log_file)
        project.runner.run([PODMAN, "kube", "play", str(manifest)], log_file=log_file,
                           timeout=600)
    except CommandFailed as exc:
        from cpb.tasks.images import _failed  # the shared failure message (log, hint, tail)
        raise _failed(exc) from None
    finally:
        store.invalidate()
    running = store.pods().get(build.k8s_name)
    if running is None or running.status != RUNNING:
        state = running.status if running else "missing"
        stopped = [c.get("Names", "?") for c in (running.containers if running else [])
                   if c.get("Status") != "running"]
        hint = f"; not running: {', '.join(stopped)} (see `cpb logs pod:{pod}`)" if stopped else ""
        raise BuildError(f"{task}: pod {build.k8s_name} is {state} after `podman kube play`"
                         f"{hint}; log: {log_file}")
    project.state.write_stamp(task, {"digest": build.digest, "components": build.components,
                                     "pod_id": running.id})


def _remove(runner: Runner, name: str, stop_timeout: int, log_file: Any = None) -> None:
    args = [PODMAN, "pod", "rm", "--force", "--ignore", "--time", str(stop_timeout), name]
    if log_file is None:
        runner.run(args, timeout=stop_timeout + 300)
    else:
        runner.run(args, log_file=log_file, timeout=stop_timeout + 300)


def pod_down(project: Project, pod: str, *, volumes: bool = False) -> bool:
    """Stop and remove the pod (and, if asked, its named volumes); False if it was not there."""
    build = project.pods[pod]
    spec = project.spec.pods[pod]
    store = pod_store(project)
    existed = build.k8s_name in store.pods()
    try:
        _remove(project.runner, build.k8s_name, spec.stop_timeout)
        if volumes:
            names = named_volumes(project.spec.project, spec)
            if names:
                project.runner.run([PODMAN, "volume", "rm", "--force", *names], timeout=300)
    except CommandFailed as exc:
        raise BuildError(f"removing pod {build.k8s_name} failed: {exc.tail(3)}") from None
    finally:
        store.invalidate()
    return existed


# -- reasons and status ---------------------------------------------------------

def pod_reasons(project: Project, pod: str, pending: set[str]) -> list[str]:
    build = project.pods[pod]
    running = pod_store(project).pods().get(build.k8s_name)
    stamp = project.state.read_stamp(f"pod:{pod}") or {}
    old: dict[str, Any] = stamp.get("components") or {}
    found: list[str] = []
    if running is None:
        found.append(f"pod {build.k8s_name} is not running")
    elif running.labels.get(LABEL_DIGEST) == build.label:
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
        if f"build:{image}" in pending:
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


def idle_pod_tasks(project: Project) -> set[str]:
    """pod: tasks of pods that are not running: `cpb plan` leaves them out unless asked."""
    running = pod_store(project).pods() if project.pods else {}
    return {f"pod:{name}" for name, build in project.pods.items()
            if build.k8s_name not in running}


def pod_status(project: Project, pods: list[str]) -> list[dict[str, Any]]:
    """Each pod: its state, and each container's state, image and image digest."""
    store = pod_store(project)
    running = store.pods()
    containers: dict[str, list[dict[str, Any]]] = {}
    if any(project.pods[p].k8s_name in running for p in pods):
        filters = [arg for p in pods if project.pods[p].k8s_name in running
                   for arg in ("--filter", f"pod={project.pods[p].k8s_name}")]
        out = project.runner.run([PODMAN, "ps", "--all", "--format", "json", *filters],
                                 timeout=120)
        for row in json.loads(out or "[]") or []:
            if not row.get("IsInfra"):  # PodName is only filled in with --pod
                containers.setdefault(row.get("Pod", ""), []).append(row)
    used = [c.get("ImageID", "") for rows in containers.values() for c in rows]
    digests = {image_id: labels.get("io.cpb.resolve.digest", "") for image_id, labels
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
        mine = containers.get(pod.id, []) if pod else []
        for c in sorted(mine, key=lambda c: c["Names"][0]):
            shown = c["Names"][0]
            image_id = c.get("ImageID", "")
            entry["containers"].append({
                "name": shown[len(prefix):] if shown.startswith(prefix) else shown,
                "id": c.get("Id", ""), "state": c.get("State", ""),
                "image": c.get("Image", ""), "image_id": image_id,
                "digest": digests.get(image_id, ""),
            })
        result.append(entry)
    return result
