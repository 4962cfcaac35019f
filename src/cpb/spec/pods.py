"""The `pods:` section of cpb.yaml as frozen dataclasses.

`build_pods` runs inside `load_spec`, after the images are known: each
container names an image of the spec, `pod_defaults` are merged into every
pod, host folders are resolved against the project, and the names that end
up in Kubernetes objects are checked to be unique within their pod. What the
schema cannot say is checked here: port numbers and host ports published
twice on the machine (every pod of a spec runs on the one machine `cpb up`
runs on), IP addresses, label keys cpb sets itself, Service names.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cpb.errors import SpecError
from cpb.util import did_you_mean

DEFAULT_STOP_TIMEOUT = 10
# label keys cpb writes into the manifests itself (kube.py): a user's would be overwritten
CPB_LABEL_PREFIX = "io.cpb."
CPB_LABELS = ("app.kubernetes.io/name", "app.kubernetes.io/part-of")
# prefixes Kubernetes keeps for its own components
RESERVED_LABEL_PREFIXES = ("kubernetes.io/", "k8s.io/")


@dataclass(frozen=True)
class VolumeSpec:
    mount: str  # path in the container
    host: str | None = None  # as written, relative to cpb.yaml (or absolute)
    host_path: Path | None = None  # resolved on this machine
    volume: str | None = None  # a named volume
    read_only: bool = False


@dataclass(frozen=True)
class ResourcesSpec:
    cpu: str | None = None
    memory: str | None = None


@dataclass(frozen=True)
class ContainerSpec:
    name: str  # unique in the pod
    image: str  # an image of the spec
    replicas: int = 1
    role: str = "worker"  # "service" (gets a Service in the cluster form) or "worker"
    env: tuple[tuple[str, str], ...] = ()
    command: tuple[str, ...] = ()
    args: tuple[str, ...] | None = None  # None: the image's cmd; () clears it
    ports: tuple[int, ...] = ()  # the image's ports and the container's own
    volumes: tuple[VolumeSpec, ...] = ()
    resources: ResourcesSpec = ResourcesSpec()
    workdir: str | None = None
    user: str | None = None  # the image's `user` (None: the base image's, root as a rule)
    restricted: bool = True  # the cluster form's "restricted" securityContext (docs/pods.md)


@dataclass(frozen=True)
class PublishedPort:
    host_port: int
    container_port: int
    host_ip: str | None = None
    protocol: str = "TCP"


@dataclass(frozen=True)
class PodSpec:
    name: str
    containers: tuple[ContainerSpec, ...]
    ports: tuple[PublishedPort, ...] = ()
    hosts: tuple[tuple[str, str], ...] = ()  # (hostname, ip)
    labels: tuple[tuple[str, str], ...] = ()
    restart: str = "Always"
    stop_timeout: int = DEFAULT_STOP_TIMEOUT
    # Why this pod cannot run as one Podman pod (file:line:col: ...), or None.
    # The cluster form has no such limit, so the spec loads; `cpb up` refuses.
    pod_form_error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """The spec as plain data, without paths that depend on this machine."""
        data = asdict(self)
        data.pop("pod_form_error")
        for container in data["containers"]:
            for volume in container["volumes"]:
                volume.pop("host_path")
        return data


Fail = Callable[[str, str], Exception]


def build_pods(data: Mapping[str, Any], images: Mapping[str, Any], root: Path,
               fail: Fail) -> dict[str, PodSpec]:
    """PodSpec per pod of the validated document `data`, sorted by name."""
    defaults = data.get("pod_defaults") or {}
    raw_pods: Mapping[str, Any] = data.get("pods") or {}
    _check_labels(defaults.get("labels", {}), "pod_defaults", fail)
    _check_hosts(defaults.get("hosts", {}), "pod_defaults", fail)
    pods = {name: _pod(name, raw_pods[name], defaults, images, root, fail)
            for name in sorted(raw_pods)}
    _check_host_ports(pods, fail)
    return pods


def _rename_hint(named: bool, other_named: bool, where: str, other: str) -> str:
    """How to tell two containers apart; a container's default name is its image's."""
    if named and other_named:
        return "change one of their names"
    if named or other_named:
        unnamed = other if named else where
        return f"give {unnamed} a 'name' (its default is its image's name)"
    return "give one of them a 'name' (the default is the image's name)"


def _pod(name: str, raw: Mapping[str, Any], defaults: Mapping[str, Any],
         images: Mapping[str, Any], root: Path, fail: Fail) -> PodSpec:
    at = f"pods.{name}"
    env = {**defaults.get("env", {}), **raw.get("env", {})}
    resources = {**defaults.get("resources", {}), **raw.get("resources", {})}
    containers: list[ContainerSpec] = []
    seen: dict[str, tuple[str, bool]] = {}  # name -> (where, given as 'name')
    for index, entry in enumerate(raw["containers"]):
        where = f"{at}.containers[{index}]"
        container = _container(entry, env, resources, images, root, where, fail)
        named = "name" in entry
        for shown in _replica_names(container):
            if shown in seen:
                other, other_named = seen[shown]
                raise fail(f"container name '{shown}' is already used by {other}; "
                           + _rename_hint(named, other_named, where, other), where)
            seen[shown] = (where, named)
        containers.append(container)
    ports = tuple(_published(text, f"{at}.ports[{i}]", fail)
                  for i, text in enumerate(raw.get("ports", [])))
    published: dict[tuple[int, str], int] = {}
    for index, port in enumerate(ports):
        key = (port.container_port, port.protocol)
        if key in published:
            raise fail(f"container port {port.container_port}/{port.protocol.lower()} is "
                       f"already published by {at}.ports[{published[key]}]",
                       f"{at}.ports[{index}]")
        published[key] = index
    problem = _shared_network_problem(containers, ports, at, fail)
    _check_labels(raw.get("labels", {}), at, fail)
    _check_hosts(raw.get("hosts", {}), at, fail)
    hosts = {**defaults.get("hosts", {}), **raw.get("hosts", {})}
    labels = {**defaults.get("labels", {}), **raw.get("labels", {})}
    return PodSpec(
        name=name, containers=tuple(containers), ports=ports,
        hosts=tuple(sorted(hosts.items())), labels=tuple(sorted(labels.items())),
        restart=raw.get("restart", defaults.get("restart", "Always")),
        stop_timeout=raw.get("stop_timeout",
                             defaults.get("stop_timeout", DEFAULT_STOP_TIMEOUT)),
        pod_form_error=problem)


def listening_ports(container: ContainerSpec, published: tuple[PublishedPort, ...],
                    first: bool) -> list[int]:
    """The ports a container listens on: its image's `ports` and its own, and, for
    the pod's first container, published ports no container declares (they go there)."""
    return [*container.ports, *([p.container_port for p in published] if first else [])]


def _shared_network_problem(containers: list[ContainerSpec],
                            published: tuple[PublishedPort, ...], at: str,
                            fail: Fail) -> str | None:
    """Replicas of a listening container cannot share one Podman pod: they share one
    network namespace, so the second cannot bind the port and (restart: Always)
    crash-loops. Said here, at spec time, with the line of `replicas`."""
    declared = {port for c in containers for port in c.ports}
    undeclared = tuple(p for p in published if p.container_port not in declared)
    for index, container in enumerate(containers):
        ports = listening_ports(container, undeclared, index == 0)
        if container.replicas > 1 and ports:
            listed = ", ".join(str(p) for p in dict.fromkeys(ports))
            return str(fail(
                f"{container.replicas} replicas of '{container.name}' cannot run in one "
                f"Podman pod: it listens on {listed} and the pod's containers share one "
                "network, so only one replica could bind it; use replicas: 1 for `cpb up`, "
                "or `cpb kube --cluster` (each replica its own pod)",
                f"{at}.containers[{index}].replicas"))
    return None


def check_pod_form(pod: PodSpec) -> None:
    """Raise the spec error that keeps `pod` from running as one Podman pod, if any."""
    if pod.pod_form_error is not None:
        raise SpecError(pod.pod_form_error)


def _container(raw: Mapping[str, Any], pod_env: Mapping[str, Any],
               pod_resources: Mapping[str, Any], images: Mapping[str, Any], root: Path,
               at: str, fail: Fail) -> ContainerSpec:
    image_name: str = raw["image"]
    if image_name not in images:
        hint = did_you_mean(image_name, sorted(images))
        raise fail(f"'{image_name}' is not an image of this spec{hint}", f"{at}.image")
    image = images[image_name]
    ports = tuple(dict.fromkeys([*image.ports, *raw.get("ports", [])]))
    env = {**pod_env, **raw.get("env", {})}
    resources = {**pod_resources, **raw.get("resources", {})}
    volumes = tuple(_volume(v, root, f"{at}.volumes[{i}]", fail)
                    for i, v in enumerate(raw.get("volumes", [])))
    mounts = [v.mount for v in volumes]
    if len(set(mounts)) != len(mounts):
        raise fail("two volumes are mounted at the same path", f"{at}.volumes")
    args = raw.get("args")
    name: str = raw.get("name", _k8s_name(image_name))
    role: str = raw.get("role", "service" if ports else "worker")
    if role == "service" and not name[0].isalpha():
        # the cluster form puts a Service of this name in front of it (an RFC 1035 label)
        where = f"{at}.name" if "name" in raw else at
        raise fail(f"container name '{name}' is also its Service's name in the cluster form, "
                   "which must begin with a letter; give it a 'name'", where)
    return ContainerSpec(
        name=name, image=image_name,
        replicas=raw.get("replicas", 1),
        role=role,
        env=tuple(sorted((k, _text(v)) for k, v in env.items())),
        command=tuple(raw.get("command", ())),
        args=None if args is None else tuple(args),
        ports=ports, volumes=volumes,
        resources=ResourcesSpec(cpu=_opt_text(resources.get("cpu")),
                                memory=_opt_text(resources.get("memory"))),
        workdir=raw.get("workdir"), user=image.user,
        restricted=bool((raw.get("security") or {}).get("restricted", True)))


def _volume(raw: Mapping[str, Any], root: Path, at: str, fail: Fail) -> VolumeSpec:
    if ("host" in raw) == ("volume" in raw):
        which = "both" if "host" in raw else "neither"
        raise fail(f"give exactly one of 'host' or 'volume' ({which} given)", at)
    read_only = bool(raw.get("read_only", False))
    if "volume" in raw:
        return VolumeSpec(mount=raw["mount"], volume=raw["volume"], read_only=read_only)
    host: str = raw["host"]
    path = (root / host).resolve()
    if path.exists() and not path.is_dir():
        raise fail(f"{host} is not a folder (only folders can be mounted)", f"{at}.host")
    return VolumeSpec(mount=raw["mount"], host=host, host_path=path, read_only=read_only)


def _published(text: str, at: str, fail: Fail) -> PublishedPort:
    body, _, protocol = text.partition("/")
    parts = body.split(":")
    host_ip = parts[0] if len(parts) == 3 else None
    for side, number in (("host", parts[-2]), ("container", parts[-1])):
        if not 1 <= int(number) <= 65535:
            raise fail(f"{side} port {int(number)} is not a port number (1-65535)", at)
    return PublishedPort(host_port=int(parts[-2]), container_port=int(parts[-1]),
                         host_ip=host_ip, protocol=(protocol or "tcp").upper())


def _check_host_ports(pods: Mapping[str, PodSpec], fail: Fail) -> None:
    """A host port is published once on the machine: `cpb up` runs every pod of the
    spec there, and the second pod to bind it would not start."""
    taken: list[tuple[PublishedPort, str]] = []
    for name, pod in pods.items():
        for index, port in enumerate(pod.ports):
            where = f"pods.{name}.ports[{index}]"
            for other, other_at in taken:
                if (other.host_port == port.host_port and other.protocol == port.protocol
                        and (other.host_ip is None or port.host_ip is None
                             or other.host_ip == port.host_ip)):
                    raise fail(f"host port {port.host_port}/{port.protocol.lower()} is "
                               f"already published by {other_at}", where)
            taken.append((port, where))


def _check_labels(labels: Mapping[str, Any], at: str, fail: Fail) -> None:
    for key in labels:
        if key.startswith(CPB_LABEL_PREFIX) or key in CPB_LABELS:
            raise fail(f"label '{key}' is set by cpb itself", f"{at}.labels.{key}")
        if key.startswith(RESERVED_LABEL_PREFIXES):
            raise fail(f"label prefix '{key.split('/')[0]}/' is reserved for Kubernetes",
                       f"{at}.labels.{key}")


def _check_hosts(hosts: Mapping[str, str], at: str, fail: Fail) -> None:
    for host, ip in hosts.items():
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            raise fail(f"{ip!r} is not an IP address", f"{at}.hosts.{host}") from None


def _replica_names(container: ContainerSpec) -> list[str]:
    return replica_names(container.name, container.replicas)


def replica_names(name: str, replicas: int) -> list[str]:
    """The pod form runs each replica as its own container: name-1, name-2, ..."""
    if replicas == 1:
        return [name]
    return [f"{name}-{index}" for index in range(1, replicas + 1)]


def _k8s_name(name: str) -> str:
    """A DNS label from an image name (which may hold '.' and '_')."""
    # cut before stripping: a name cut at a '-' must not end with it
    return "".join(c if c.isalnum() else "-" for c in name.lower())[:42].strip("-") or "c"


def k8s_name(name: str) -> str:
    return "".join(c if c.isalnum() or c == "-" else "-" for c in name.lower()).strip("-")


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _opt_text(value: Any) -> str | None:
    return None if value is None else _text(value)
