"""Kubernetes manifests of a pod, rendered from templates/kube/.

Two forms from one `PodSpec`:

- `pod_manifest`: one `Pod`, what `podman kube play` runs on one machine.
  Replicas become containers `name-1 … name-N`; every container's name
  resolves to 127.0.0.1 (hostAliases), so `nats://nats:4222` works inside it.
- `cluster_manifest`: for a cluster, each container becomes a Deployment
  (with its replicas); service containers get a Service of the same name,
  so the same `nats://nats:4222` works there too.

The views are built here as plain data; the templates only lay them out,
quoting every value as JSON (which YAML reads as it is).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cpb.naming import PROJECT_LABEL
from cpb.resolve.digest import sha256_text
from cpb.resolve.runtime import KIND_ENV, NAME_ENV, TLS_DIR
from cpb.resources import templates_dir
from cpb.spec.pods import ContainerSpec, PodSpec, PublishedPort, k8s_name, replica_names

if TYPE_CHECKING:
    import jinja2

POD_TEMPLATE = "pod.yaml.j2"
CLUSTER_TEMPLATE = "cluster.yaml.j2"
LABEL_PROJECT = PROJECT_LABEL
LABEL_POD = "io.cpb.pod"
LABEL_DIGEST = "io.cpb.pod-digest"
LABEL_CONTAINER = "io.cpb.container"
TLS_VOLUME = "cpb-tls"
DIGEST_LABEL_LENGTH = 40  # label values are at most 63 characters


def _quote(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


@cache
def _environment(folder: Path) -> jinja2.Environment:
    import jinja2  # only for a spec with pods: a plan of images alone does not load it

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(folder)), undefined=jinja2.StrictUndefined,
        autoescape=False,  # noqa: S701 (YAML, not HTML: values are quoted by `q`)
        keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True)
    env.filters["q"] = _quote
    return env


def kube_templates() -> Path:
    return templates_dir() / "kube"


def templates_digest() -> str:
    """What a change of cpb's own pod templates does to every pod's identity."""
    folder = kube_templates()
    texts = {p.name: p.read_text() for p in sorted(folder.glob("*.j2"))}
    return sha256_text(json.dumps(texts, sort_keys=True))[:16]


def pod_k8s_name(project: str, pod: str) -> str:
    """The pod's name in podman (and the prefix of its containers' names)."""
    return k8s_name(f"{project}-{pod}")


def pod_manifest(project: str, pod: PodSpec, image_refs: Mapping[str, str], *,
                 digest: str, spec_file: str = "cpb.yaml",
                 tls_dirs: Mapping[str, str] | None = None) -> str:
    """`tls_dirs`: {container: host folder of its TLS files}, mounted read-only at
    TLS_DIR (a hostPath: podman 4.3.1's `kube play` crashes on secret volumes)."""
    tls_dirs = tls_dirs or {}
    containers: list[dict[str, Any]] = []
    published = _published_by_container(pod)
    for container in pod.containers:
        for index, name in enumerate(replica_names(container.name, container.replicas)):
            ports = published.get(container.name, []) if index == 0 else []
            view = _container_view(container, name, image_refs, ports)
            if container.name in tls_dirs:
                view["mounts"].append(_tls_mount(_tls_volume(container.name)))
            if container.replicas > 1 and KIND_ENV in dict(container.env) \
                    and NAME_ENV not in dict(container.env):
                # replicas share the pod's host name: each worker is told its own
                view["env"] = sorted([*view["env"], (NAME_ENV, name)])
            containers.append(view)
    aliases = _host_aliases(pod)
    local = sorted({c["name"] for c in containers} | {c.name for c in pod.containers})
    aliases.append({"ip": "127.0.0.1", "hostnames": local})
    labels = {**dict(pod.labels), LABEL_PROJECT: project, LABEL_POD: pod.name,
              LABEL_DIGEST: digest[:DIGEST_LABEL_LENGTH]}
    view = {
        "name": pod.name, "k8s_name": pod_k8s_name(project, pod.name),
        "labels": dict(sorted(labels.items())), "restart": pod.restart,
        "stop_timeout": pod.stop_timeout, "host_aliases": aliases, "fs_group": None,
        "volumes": _volumes(project, pod.containers) + [
            _volume_view(_tls_volume(c), tls_dir=d) for c, d in sorted(tls_dirs.items())],
        "containers": containers,
    }
    return _environment(kube_templates()).get_template(POD_TEMPLATE).render(
        pod=view, spec_file=spec_file)


def cluster_manifest(project: str, pod: PodSpec, image_refs: Mapping[str, str], *,
                     spec_file: str = "cpb.yaml",
                     tls_secrets: Mapping[str, str] | None = None,
                     secrets: Mapping[str, Mapping[str, bytes]] | None = None) -> str:
    """`tls_secrets`: {container: the name of the Secret holding its TLS files},
    mounted read-only at TLS_DIR; `secrets`: {Secret name: its files}, emitted as
    Secret objects (only when asked: `--with-secrets`)."""
    tls_secrets = tls_secrets or {}
    deployments = []
    for container in pod.containers:
        selector = {LABEL_PROJECT: project, LABEL_POD: pod.name,
                    LABEL_CONTAINER: container.name}
        labels = {**dict(pod.labels), **selector,
                  "app.kubernetes.io/name": container.name,
                  "app.kubernetes.io/part-of": project}
        ports = [{"containerPort": p, "protocol": "TCP"} for p in container.ports]
        service_ports = ([{"name": f"p{p}", "port": p, "targetPort": p, "protocol": "TCP"}
                          for p in container.ports] if container.role == "service" else [])
        view = _container_view(container, container.name, image_refs, ports,
                               security=security_context(container))
        volumes = _volumes(project, (container,))
        secret = tls_secrets.get(container.name)
        if secret:
            view["mounts"].append(_tls_mount(TLS_VOLUME))
            volumes.append(_volume_view(TLS_VOLUME, secret=secret))
        uid = _uid(container.user)
        deployments.append({
            "name": k8s_name(f"{pod.name}-{container.name}"),
            "service": container.name,
            "labels": dict(sorted(labels.items())), "selector": selector,
            "replicas": container.replicas, "service_ports": service_ports,
            "pod": {
                # a Deployment's pods must restart; stop_timeout still applies
                "restart": "Always", "stop_timeout": pod.stop_timeout,
                "host_aliases": _host_aliases(pod),
                # a Secret's files belong to root: the group lets a non-root user read them
                "fs_group": uid if secret and uid else None,
                "volumes": volumes, "containers": [view],
            },
        })
    shown = [{"name": name, "data": {k: base64.b64encode(v).decode()
                                     for k, v in sorted(files.items())}}
             for name, files in sorted((secrets or {}).items())]
    return _environment(kube_templates()).get_template(CLUSTER_TEMPLATE).render(
        pod={"name": pod.name}, deployments=deployments, spec_file=spec_file, secrets=shown,
        tls=bool(tls_secrets))


def security_context(container: ContainerSpec) -> dict[str, Any] | None:
    """What the "restricted" Pod Security Standard asks of a container, or None when
    the spec relaxes it (`security: {restricted: false}`).

    runAsNonRoot is set only when the image's `user` is a uid other than 0: the
    kubelet refuses to start a runAsNonRoot container whose user is a name (it
    cannot tell that name's uid), and an image without `user` runs as root.
    """
    if not container.restricted:
        return None
    context: dict[str, Any] = {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    uid = _uid(container.user)
    if uid:
        context.update(runAsNonRoot=True, runAsUser=uid)
    return context


def _uid(user: str | None) -> int | None:
    """The uid of an image's `user` (`1000`, `1000:1000`), None for a name or none."""
    head = (user or "").split(":", 1)[0]
    return int(head) if head.isdigit() else None


def _container_view(container: ContainerSpec, name: str, image_refs: Mapping[str, str],
                    ports: list[dict[str, Any]], *,
                    security: dict[str, Any] | None = None) -> dict[str, Any]:
    requests = {k: v for k, v in (("cpu", container.resources.cpu),
                                  ("memory", container.resources.memory)) if v is not None}
    return {
        "name": name, "image": image_refs[container.image],
        "command": list(container.command),
        "args": None if container.args is None else list(container.args),
        "workdir": container.workdir, "env": list(container.env), "ports": ports,
        "mounts": [{"name": _volume_name(v.volume, v.host), "path": v.mount,
                    "read_only": v.read_only} for v in container.volumes],
        "requests": requests, "security": security,
    }


def _published_by_container(pod: PodSpec) -> dict[str, list[dict[str, Any]]]:
    """containerPort entries, published ones with their hostPort.

    A pod's containers share one network, so a published port can sit on any
    of them; it goes on the container that declares the port (else the first).
    """
    result: dict[str, list[dict[str, Any]]] = {c.name: [] for c in pod.containers}
    # by port and protocol: 53/tcp and 53/udp are two entries (the spec refuses a pair twice)
    published = {(p.container_port, p.protocol): p for p in pod.ports}
    for container in pod.containers:
        for port in container.ports:
            entry: dict[str, Any] = {"containerPort": port, "protocol": "TCP"}
            if (port, "TCP") in published:
                entry.update(_host_side(published.pop((port, "TCP"))))
            result[container.name].append(entry)
    for extra in published.values():
        owner = next((c.name for c in pod.containers if extra.container_port in c.ports),
                     pod.containers[0].name)
        result[owner].append({"containerPort": extra.container_port, **_host_side(extra)})
    return result


def _host_side(port: PublishedPort) -> dict[str, Any]:
    side: dict[str, Any] = {"hostPort": port.host_port, "protocol": port.protocol}
    if port.host_ip:
        side["hostIP"] = port.host_ip
    return side


def _host_aliases(pod: PodSpec) -> list[dict[str, Any]]:
    by_ip: dict[str, list[str]] = {}
    for host, ip in pod.hosts:
        by_ip.setdefault(ip, []).append(host)
    return [{"ip": ip, "hostnames": sorted(names)} for ip, names in sorted(by_ip.items())]


def _volume_name(volume: str | None, host: str | None) -> str:
    if volume is not None:
        return f"vol-{volume}"
    assert host is not None
    # a stable name from the folder as written: the same folder, the same volume
    return "host-" + sha256_text(host)[:10]


def volume_claim(project: str, volume: str) -> str:
    """The named volume's name in podman: per project, so projects never share one."""
    return k8s_name(f"{project}-{volume}")


def _volumes(project: str, containers: tuple[ContainerSpec, ...]) -> list[dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for container in containers:
        for v in container.volumes:
            name = _volume_name(v.volume, v.host)
            if v.volume is not None:
                found[name] = _volume_view(name, claim=volume_claim(project, v.volume))
            else:
                found[name] = _volume_view(name, host_path=str(v.host_path))
    return [found[k] for k in sorted(found)]


def _volume_view(name: str, *, claim: str | None = None, host_path: str | None = None,
                 tls_dir: str | None = None, secret: str | None = None) -> dict[str, Any]:
    return {"name": name, "claim": claim, "host_path": host_path, "tls_dir": tls_dir,
            "secret": secret}


def _tls_volume(container: str) -> str:
    return f"{TLS_VOLUME}-{container}"


def _tls_mount(volume: str) -> dict[str, Any]:
    return {"name": volume, "path": TLS_DIR, "read_only": True}


def named_volumes(project: str, pod: PodSpec) -> list[str]:
    return sorted({volume_claim(project, v.volume) for c in pod.containers
                   for v in c.volumes if v.volume is not None})
