"""The ComputePods runtime inside images: its wheel, made by cpb, and nats-py's.

An image that installs cpb's built-in `computepods-runtime` module (itself, or
through `computepods-majordomo` or `computepods-worker`) needs two Python
wheels, which the module unpacks: `cpb_runtime`, the package beside cpb in
this distribution, and nats-py. Neither can be downloaded inside a build
(images reach no HTTPS host), so both become artifacts of the image:

- nats-py is a url artifact with a pinned sha256, fetched on the host by a
  `fetch:` task like any other;
- the `cpb_runtime` wheel is made by a `wheel:` task from the installed
  package's files. It is built byte for byte the same from the same files
  (sorted entries, fixed timestamps, stored uncompressed), so its sha256 is
  known before any task runs, and a change to the runtime's code changes
  exactly the digests of the images that carry it.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import importlib.util
import io
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from cpb.errors import CpbError
from cpb.spec.model import ArtifactSpec, ImageSpec, ProjectSpec
from cpb.spec.pods import PodSpec

RUNTIME_MODULE_LABEL = "builtin:computepods-runtime"
WORKER_MODULE_LABEL = "builtin:computepods-worker"
NATS_MODULE_LABEL = "builtin:computepods-nats"
MAJORDOMO_MODULE_LABEL = "builtin:computepods-majordomo"
NATS_PORT = 4222
# Environment cpb gives the runtime's containers in a pod (docs/runtime.md);
# a container's own `env` wins.
KIND_ENV, NAME_ENV, URL_ENV = "CP_WORKER_KIND", "CP_WORKER_NAME", "CP_NATS_URL"
CA_ENV, CERT_ENV, KEY_ENV = "CP_NATS_CA", "CP_NATS_CERT", "CP_NATS_KEY"
# where a container finds its role's TLS files (mounted by cpb: resolve/podtls.py)
TLS_DIR = "/etc/computepods/tls"
TLS_FILES = {CA_ENV: f"{TLS_DIR}/ca.crt", CERT_ENV: f"{TLS_DIR}/tls.crt",
             KEY_ENV: f"{TLS_DIR}/tls.key"}
RUNTIME_PACKAGE = "cpb_runtime"
WHEEL_SUBJECT = RUNTIME_PACKAGE  # the task `wheel:cpb_runtime`

NATS_PY_URL = ("https://files.pythonhosted.org/packages/48/a3/"
               "16cec37172144d3362d7551bb823a098b2b2903281fc095dfe4480b8c2fd/"
               "nats_py-2.16.0-py3-none-any.whl")
NATS_PY_SHA256 = "aeb1ff123966c05833d26c7df7e1d54c1c6d32b612428b21677a2e921f1fecae"
NATS_PY = ArtifactSpec(path=None, rel=NATS_PY_URL, name="nats_py-2.16.0-py3-none-any.whl",
                       url=NATS_PY_URL, checksums=(("sha256", NATS_PY_SHA256),))

_EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip file can hold


@dataclass(frozen=True)
class RuntimeWheel:
    name: str  # the wheel's file name
    data: bytes
    sha256: str
    sources: tuple[Path, ...]  # the files it was made from


def runtime_folder() -> Path:
    found = importlib.util.find_spec(RUNTIME_PACKAGE)
    if found is None or found.origin is None:
        raise CpbError(f"the {RUNTIME_PACKAGE} package is not installed beside cpb; "
                       "reinstall cpb")
    return Path(found.origin).parent


def runtime_sources(folder: Path | None = None) -> tuple[Path, ...]:
    folder = folder or runtime_folder()
    return tuple(sorted(p for p in folder.rglob("*")
                        if p.is_file() and (p.suffix == ".py" or p.name == "py.typed")
                        and "__pycache__" not in p.parts))


@cache
def runtime_wheel(folder: Path | None = None) -> RuntimeWheel:
    """The wheel of the runtime package, the same bytes for the same files."""
    folder = folder or runtime_folder()
    sources = runtime_sources(folder)
    version = _version(folder)
    dist_info = f"{RUNTIME_PACKAGE}-{version}.dist-info"
    entries = [(f"{RUNTIME_PACKAGE}/{p.relative_to(folder).as_posix()}", p.read_bytes())
               for p in sources]
    entries.append((f"{dist_info}/METADATA", (
        f"Metadata-Version: 2.1\nName: {RUNTIME_PACKAGE.replace('_', '-')}\n"
        f"Version: {version}\nSummary: ComputePods runtime (made by cpb)\n"
        "Requires-Dist: nats-py>=2.15\n").encode()))
    entries.append((f"{dist_info}/WHEEL", (
        b"Wheel-Version: 1.0\nGenerator: cpb\nRoot-Is-Purelib: true\n"
        b"Tag: py3-none-any\n")))
    record = "".join(f"{name},sha256={_b64sha(data)},{len(data)}\n" for name, data in entries)
    entries.append((f"{dist_info}/RECORD", (record + f"{dist_info}/RECORD,,\n").encode()))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as wheel:
        for name, data in entries:
            info = zipfile.ZipInfo(name, date_time=_EPOCH)
            info.external_attr = 0o644 << 16
            wheel.writestr(info, data)
    data = buffer.getvalue()
    return RuntimeWheel(name=f"{RUNTIME_PACKAGE}-{version}-py3-none-any.whl", data=data,
                        sha256=hashlib.sha256(data).hexdigest(), sources=sources)


def _version(folder: Path) -> str:
    for line in (folder / "__init__.py").read_text().splitlines():
        if line.startswith("__version__"):
            return line.split("=", 1)[1].strip().strip("\"'")
    from cpb import __version__  # the runtime ships with cpb and shares its version
    return __version__


def _b64sha(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def installs(image: ImageSpec, label: str) -> bool:
    return any(module.label == label for module in image.modules)


def uses_runtime(image: ImageSpec) -> bool:
    return installs(image, RUNTIME_MODULE_LABEL)


def runtime_artifact() -> ArtifactSpec:
    wheel = runtime_wheel()
    return ArtifactSpec(path=None, rel=f"(made by cpb: {wheel.name})", name=wheel.name,
                        checksums=(("sha256", wheel.sha256),), made_by=WHEEL_SUBJECT)


def with_runtime(spec: ProjectSpec) -> ProjectSpec:
    """The spec with the runtime's two wheels added to every image that installs it."""
    if not any(uses_runtime(image) for image in spec.images.values()):
        return spec
    extra = (NATS_PY, runtime_artifact())
    images = {}
    for name, image in spec.images.items():
        if uses_runtime(image):
            taken = {a.name for a in image.artifacts}
            added = tuple(a for a in extra if a.name not in taken)
            image = dataclasses.replace(image, artifacts=(*added, *image.artifacts))
        images[name] = image
    pods = {name: _pod_with_runtime(pod, images) for name, pod in spec.pods.items()}
    return dataclasses.replace(spec, images=images, pods=pods)


def _pod_with_runtime(pod: PodSpec, images: Mapping[str, ImageSpec]) -> PodSpec:
    """Workers learn their kind (their container's name in the spec) and every
    runtime container where NATS is (the container running computepods-nats;
    container names resolve inside a pod and on a cluster alike): a tls:// URL,
    and for MajorDomo and workers their certificate's files (issue 14)."""
    nats = [c.name for c in pod.containers if installs(images[c.image], NATS_MODULE_LABEL)]
    containers = []
    for container in pod.containers:
        image = images[container.image]
        if uses_runtime(image):
            added: dict[str, str] = {}
            if installs(image, WORKER_MODULE_LABEL):
                added[KIND_ENV] = container.name
            if nats:
                added[URL_ENV] = f"tls://{nats[0]}:{NATS_PORT}"
                if installs(image, WORKER_MODULE_LABEL) \
                        or installs(image, MAJORDOMO_MODULE_LABEL):
                    added.update(TLS_FILES)
            own = dict(container.env)
            env = {**{k: v for k, v in added.items() if k not in own}, **own}
            container = dataclasses.replace(container, env=tuple(sorted(env.items())))
        containers.append(container)
    return dataclasses.replace(pod, containers=tuple(containers))
