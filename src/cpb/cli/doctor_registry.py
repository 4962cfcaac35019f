"""`cpb doctor`'s checks of the spec's registry: reachable, TLS trusted, credentials, push.

Each check asks the registry itself, with the same client, certs.d,
registries.conf and auth file a build uses. Credentials are never printed:
only the file they came from. The push test (`--registry-write`) starts a
blob upload and cancels it at once, so it leaves nothing in the registry.
"""

from __future__ import annotations

from cpb.adapters.registry import (
    Registry,
    RegistryError,
    RegistryUnreachable,
    auth_file,
    credentials_for,
)
from cpb.cli.doctor import Check
from cpb.spec.model import ProjectSpec

_DOWN = ("down", "timeout")


def registry_checks(spec: ProjectSpec, *, write: bool = False,
                    client: Registry | None = None) -> list[Check]:
    """The checks for `spec.registry` (none when the spec has no registry)."""
    if spec.registry is None:
        return [Check("registry", False, f"{spec.file.name} has no registry:", required=False)]
    client = client or Registry(spec.registry)
    image = sorted(spec.images)[0]
    checks: list[Check] = []
    try:
        status = client.check()
    except RegistryUnreachable as exc:
        if exc.kind in _DOWN:
            return [Check("registry reachable", False, str(exc))]
        return [Check("registry reachable", True, f"{spec.registry.host} answers"),
                Check("registry TLS", False, str(exc))]
    except RegistryError as exc:
        return [Check("registry reachable", False, str(exc))]
    checks.append(Check("registry reachable", True,
                        f"{client.base} answered (HTTP {status})"))
    checks.append(_tls(client))
    checks.append(_credentials(client, status, image))
    if write:
        checks.append(_push(client, image))
    else:
        checks.append(Check("registry push permission", False,
                            "not tested (cpb doctor --registry-write tests it)", required=False))
    return checks


def _tls(client: Registry) -> Check:
    files = client.tls_files
    if client.base.startswith("http:"):
        return Check("registry TLS", False, f"plain HTTP ({_why_unverified(client)})",
                     required=False)
    if not client.verify:
        return Check("registry TLS", False, f"certificate not checked ({_why_unverified(client)})",
                     required=False)
    trusted = "the system bundle"
    if files.cas:
        trusted += " + " + ", ".join(str(p) for p in files.cas)
    detail = f"certificate trusted ({trusted})"
    if files.client is not None:
        detail += f"; client certificate {files.client[0]}"
    return Check("registry TLS", True, detail)


def _why_unverified(client: Registry) -> str:
    entry = client.insecure_entry
    if entry is not None:
        return f"insecure = true in {entry.source}"
    return "tls_verify: false in cpb.yaml"


def _credentials(client: Registry, status: int, image: str) -> Check:
    name = "registry credentials"
    path = client.auth_path
    found = credentials_for(client.config, path) is not None
    where = f"in {path}" if path is not None else "(no auth file)"
    if status == 200:
        return Check(name, True, "not needed to read: the registry answered without them"
                     + (f"; some are {where}" if found else ""))
    if not found:
        looked = path or auth_file() or "podman's auth file"
        return Check(name, False, f"the registry asks for them and there are none for "
                     f"{client.config.host} {f'in {looked}' if path else ''}".rstrip()
                     + f"; log in with `podman login {client.config.host}`")
    try:
        answer = client.can_read(image)
    except (RegistryError, RegistryUnreachable) as exc:
        return Check(name, False, str(exc))
    if answer == 200:
        return Check(name, True, f"accepted (from {path})")
    return Check(name, False, f"refused (HTTP {answer}) for the entry {where}; log in again "
                 f"with `podman login {client.config.host}`")


def _push(client: Registry, image: str) -> Check:
    name = "registry push permission"
    repository = f"{client.config.url}/{image}"
    try:
        status = client.can_push(image)
    except (RegistryError, RegistryUnreachable) as exc:
        return Check(name, False, str(exc))
    if status == 202:
        return Check(name, True, f"may push to {repository} (an upload was started and "
                                 "cancelled; nothing was written)")
    if status in (401, 403):
        return Check(name, False, f"denied (HTTP {status}) for {repository}; log in with an "
                                  f"account that may push: `podman login {client.config.host}`")
    return Check(name, False, f"the registry answered HTTP {status} to an upload to "
                              f"{repository}")
