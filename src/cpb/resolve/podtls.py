"""Which container of a pod gets which certificate, and the files it is given (issue 14).

A pod with a `computepods-nats` container runs its NATS with mutual TLS. Each
container of a role gets a folder of its own, mounted read-only at
``TLS_DIR``: the NATS container its server certificate and key, the CA and the
rendered ``nats.conf``; MajorDomo and each worker kind their client
certificate and key and the CA. Nothing else of the key folder reaches a
container, and nothing reaches an image.

For `cpb up` the folder is a per-pod copy under the key folder,
``<pki>/pods/<podman pod name>/<container>/`` (podman 4.3.1's `kube play`
crashes on `secret` volumes, so it is a read-only hostPath mount): the folder
0711 (the container's user may enter it, list nothing), every file 0400 and
owned by the uid the container runs as, so that uid and nobody else reads it.
For `cpb kube --cluster` the same files are a Kubernetes Secret per container,
``<pod>-<container>-tls``, referenced by name.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from cpb.errors import BuildError
from cpb.resolve.digest import digest_of
from cpb.resolve.runtime import (
    KIND_ENV,
    MAJORDOMO_MODULE_LABEL,
    NATS_MODULE_LABEL,
    TLS_DIR,
    WORKER_MODULE_LABEL,
    installs,
)
from cpb.security import natsconf
from cpb.security.pki import (
    MAJORDOMO_ROLE,
    SERVER_ROLE,
    Pki,
    PkiError,
    default_folder,
    worker_role,
)
from cpb.spec.model import ImageSpec, ProjectSpec
from cpb.spec.pods import ContainerSpec, PodSpec, k8s_name

CA_FILE, CERT_FILE, KEY_FILE, CONF_FILE = "ca.crt", "tls.crt", "tls.key", "nats.conf"


@dataclass(frozen=True)
class PodTls:
    """A pod's TLS plan: each container's role, the worker kinds, the server's names."""

    nats: str  # the NATS container's name
    roles: tuple[tuple[str, str], ...]  # (container name, role), containers with a role
    kinds: tuple[str, ...]
    server_names: tuple[str, ...]

    def role_of(self, container: str) -> str | None:
        return dict(self.roles).get(container)

    @property
    def client_roles(self) -> list[str]:
        return sorted({role for _, role in self.roles if role != SERVER_ROLE})


def container_role(container: ContainerSpec, image: ImageSpec) -> str | None:
    if installs(image, NATS_MODULE_LABEL):
        return SERVER_ROLE
    if installs(image, MAJORDOMO_MODULE_LABEL):
        return MAJORDOMO_ROLE
    if installs(image, WORKER_MODULE_LABEL):
        return worker_role(dict(container.env).get(KIND_ENV) or container.name)
    return None


def nats_container(pod: PodSpec, images: Mapping[str, ImageSpec]) -> str | None:
    found = [c.name for c in pod.containers if installs(images[c.image], NATS_MODULE_LABEL)]
    return found[0] if found else None


def plan_tls(pod: PodSpec, images: Mapping[str, ImageSpec]) -> PodTls | None:
    """None for a pod without a computepods-nats container (nothing to secure)."""
    nats = nats_container(pod, images)
    if nats is None:
        return None
    roles = []
    for container in pod.containers:
        role = container_role(container, images[container.image])
        if role is not None and not (role == SERVER_ROLE and container.name != nats):
            roles.append((container.name, role))
    kinds = sorted({role.removeprefix("worker-") for _, role in roles
                    if role.startswith("worker-")})
    # how the server is reached: its container's name (in the pod, and the cluster
    # Service's), and the addresses the pod publishes its port on
    names = {nats} | {p.host_ip for p in pod.ports if p.host_ip and p.host_ip != "0.0.0.0"}  # noqa: S104
    return PodTls(nats=nats, roles=tuple(roles), kinds=tuple(kinds),
                  server_names=tuple(sorted(names)))


def project_pki(spec: ProjectSpec) -> Pki:
    return Pki(default_folder(spec.root))


def digest_components(pki: Pki, tls: PodTls) -> dict[str, object]:
    """The pod digest's inputs: every certificate's fingerprint (read, never made here:
    a plan writes nothing; "" for one `cpb up` will issue) and the permissions."""
    found = pki.fingerprints(tls.client_roles, tls.server_names)
    return {"certificates": {role: fp[:16] for role, fp in sorted(found.items())},
            "permissions": digest_of(natsconf.digest_inputs(tls.kinds))[:16]}


def nats_conf(tls: PodTls) -> str:
    return natsconf.render(tls.kinds, natsconf.TlsPaths(
        cert=f"{TLS_DIR}/{CERT_FILE}", key=f"{TLS_DIR}/{KEY_FILE}", ca=f"{TLS_DIR}/{CA_FILE}"))


def container_files(pki: Pki, tls: PodTls, container: str) -> dict[str, bytes]:
    """The files of one container's folder (its role's only), by name."""
    role = tls.role_of(container)
    assert role is not None
    files = pki.files(role)
    out = {CA_FILE: files.ca.read_bytes(), CERT_FILE: files.cert.read_bytes(),
           KEY_FILE: files.key.read_bytes()}
    if role == SERVER_ROLE:
        out[CONF_FILE] = nats_conf(tls).encode()
    return out


def pod_folder(pki: Pki, pod_k8s_name: str) -> Path:
    return pki.folder / "pods" / pod_k8s_name


def mount_dirs(pki: Pki, tls: PodTls, pod_k8s_name: str) -> dict[str, str]:
    """{container: the host folder mounted at TLS_DIR} for `cpb up`'s manifest."""
    return {name: str(pod_folder(pki, pod_k8s_name) / name) for name, _ in tls.roles}


def secret_names(pod: str, tls: PodTls) -> dict[str, str]:
    """{container: its Kubernetes Secret's name} for `cpb kube --cluster`."""
    return {name: k8s_name(f"{pod}-{name}-tls") for name, _ in tls.roles}


def container_uid(container: ContainerSpec) -> int:
    """The uid a container runs as: its image's `user` (a uid), root without one."""
    head = (container.user or "").split(":", 1)[0]
    if not head:
        return 0
    if head.isdigit():
        return int(head)
    raise BuildError(f"container {container.name} runs as user {container.user!r}: cpb gives "
                     "its TLS key to a numeric uid only; write the image's `user:` as a uid "
                     "(e.g. \"1000\")")


Chown = Callable[[list[Path], int], None]


def write_pod_files(pki: Pki, tls: PodTls, pod: PodSpec, pod_k8s_name: str,
                    chown: Chown) -> None:
    """The per-pod copies `cpb up` mounts, made afresh: a folder per container (0711),
    its files 0400 and handed to the container's uid by `chown`."""
    pki.ensure(tls.client_roles, tls.server_names)  # made or renewed on first need
    base = pod_folder(pki, pod_k8s_name)
    try:
        _write_pod_files(pki, tls, pod, base, chown)
    except OSError as exc:
        raise PkiError(f"cannot write the pod's TLS files in {base}: {exc}") from None


def _write_pod_files(pki: Pki, tls: PodTls, pod: PodSpec, base: Path, chown: Chown) -> None:
    shutil.rmtree(base, ignore_errors=True)
    (pki.folder / "pods").mkdir(mode=0o700, exist_ok=True)
    base.mkdir(mode=0o700)
    by_name = {c.name: c for c in pod.containers}
    for name, _ in tls.roles:
        folder = base / name
        folder.mkdir(mode=0o700)
        written = []
        for file_name, data in container_files(pki, tls, name).items():
            path = folder / file_name
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o400)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            written.append(path)
        uid = container_uid(by_name[name])
        if uid != 0:  # uid 0 in a container is the user running podman: already theirs
            chown(written, uid)
        folder.chmod(0o711)  # entered by the container's user, listed by nobody


def remove_pod_files(pki: Pki, pod_k8s_name: str) -> None:
    shutil.rmtree(pod_folder(pki, pod_k8s_name), ignore_errors=True)
