"""What podman trusts for a registry: certs.d folders and registries.conf.

podman and skopeo (containers/image) move cpb's image bytes; cpb's own
registry client asks the quick questions. Both must agree on whom to trust,
so this module reads the same files, in the same order, as containers/image:

- **certs.d**: the first of `~/.config/containers/certs.d/HOST[:PORT]`,
  `/etc/containers/certs.d/HOST[:PORT]`, `/etc/docker/certs.d/HOST[:PORT]` that
  exists is the registry's folder (only that one is read). In it, `*.crt` are
  CA certificates, added to the system bundle; `NAME.cert` with `NAME.key` is a
  client certificate for mutual TLS.
- **registries.conf**: `$CONTAINERS_REGISTRIES_CONF`, else
  `~/.config/containers/registries.conf` if it exists, else
  `/etc/containers/registries.conf`; then the drop-ins of
  `registries.conf.d/`. The `[[registry]]` entry whose prefix matches the
  image reference longest decides; `insecure = true` there means "TLS without
  verification, or plain HTTP", like `tls_verify: false` in cpb.yaml.
"""

from __future__ import annotations

import logging
import os
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cpb.errors import EnvironmentProblem

log = logging.getLogger(__name__)

REGISTRIES_CONF_ENV = "CONTAINERS_REGISTRIES_CONF"
SYSTEM_CERTS_D = (Path("/etc/containers/certs.d"), Path("/etc/docker/certs.d"))
SYSTEM_REGISTRIES_CONF = Path("/etc/containers/registries.conf")


class TrustConfigError(EnvironmentProblem):
    """A certs.d folder or a registries.conf that podman would refuse too."""


def user_certs_d() -> Path:
    return Path.home() / ".config" / "containers" / "certs.d"


def certs_d_roots() -> tuple[Path, ...]:
    """The certs.d folders, in the order containers/image tries them."""
    return (user_certs_d(), *SYSTEM_CERTS_D)


def suggested_certs_dir(host: str) -> Path:
    """Where a user should put a registry's CA: the folder podman reads for them."""
    if os.geteuid() == 0:
        return SYSTEM_CERTS_D[0] / host
    return user_certs_d() / host


@dataclass(frozen=True)
class TlsFiles:
    """The certs.d folder of one registry and what it holds."""

    folder: Path | None  # None: no certs.d folder for this registry
    cas: tuple[Path, ...] = ()
    client: tuple[Path, Path] | None = None  # (NAME.cert, NAME.key)

    def context(self, verify: bool) -> ssl.SSLContext:
        """An SSL context trusting the system bundle plus these CAs, presenting the
        client certificate; `verify=False` skips checking the server (podman's
        insecure), but still presents the client certificate."""
        if not verify:
            # Nothing to check against: skip loading the system bundle, which
            # takes ~0.1 s here.
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        else:
            context = ssl.create_default_context()
        for ca in self.cas if verify else ():
            try:
                context.load_verify_locations(cafile=str(ca))
            except (OSError, ssl.SSLError) as exc:
                raise TrustConfigError(f"cannot use the CA certificate {ca}: {_reason(exc)}"
                                       ) from None
        if self.client is not None:
            cert, key = self.client
            try:
                context.load_cert_chain(str(cert), str(key))
            except (OSError, ssl.SSLError) as exc:
                raise TrustConfigError(f"cannot use the client certificate {cert} with {key}: "
                                       f"{_reason(exc)}") from None
        return context


def cert_dir(host: str, roots: tuple[Path, ...] | None = None) -> Path | None:
    """The registry's certs.d folder: the first root holding `HOST[:PORT]`."""
    for root in roots if roots is not None else certs_d_roots():
        folder = root / host
        try:
            folder.stat()
        except PermissionError:
            log.debug("cannot look into %s (permission denied)", folder)
            continue
        except OSError:
            continue
        return folder
    return None


def tls_files(host: str, roots: tuple[Path, ...] | None = None) -> TlsFiles:
    """The CAs and client certificate podman would use for `host` (host[:port])."""
    folder = cert_dir(host, roots)
    if folder is None:
        return TlsFiles(None)
    try:
        names = sorted(entry.name for entry in os.scandir(folder))
    except NotADirectoryError:
        return TlsFiles(folder)
    except OSError as exc:
        raise TrustConfigError(f"cannot read {folder}: {_reason(exc)}") from None
    cas = tuple(folder / n for n in names if n.endswith(".crt"))
    pairs: list[tuple[Path, Path]] = []
    for name in names:
        # containers/image refuses a certificate without its key and the other
        # way round; so does cpb, with the same advice.
        if name.endswith(".cert"):
            key = name[:-len(".cert")] + ".key"
            if key not in names:
                raise TrustConfigError(
                    f"missing key {folder / key} for client certificate {folder / name} "
                    "(CA certificates use the extension .crt)")
            pairs.append((folder / name, folder / key))
        elif name.endswith(".key") and name[:-len(".key")] + ".cert" not in names:
            raise TrustConfigError(f"missing client certificate "
                                   f"{folder / (name[:-len('.key')] + '.cert')} for key "
                                   f"{folder / name}")
    if len(pairs) > 1:
        # Go offers the server every pair; Python's ssl holds one: the first by name.
        log.warning("%s holds %d client certificates; cpb presents only the first, %s",
                    folder, len(pairs), pairs[0][0].name)
    return TlsFiles(folder, cas, pairs[0] if pairs else None)


# -- registries.conf -------------------------------------------------------------

@dataclass(frozen=True)
class RegistryEntry:
    prefix: str
    insecure: bool
    source: Path


def registries_conf_files() -> list[Path]:
    """registries.conf and its drop-ins, in the order containers/image reads them."""
    home = Path.home() / ".config" / "containers"
    user_file, user_dir = home / "registries.conf", home / "registries.conf.d"
    system_dir = SYSTEM_REGISTRIES_CONF.parent / "registries.conf.d"
    if os.environ.get(REGISTRIES_CONF_ENV):
        main, dirs = Path(os.environ[REGISTRIES_CONF_ENV]), [system_dir, user_dir]
    elif user_file.exists():
        main, dirs = user_file, [user_dir]  # a user's own file replaces the system's
    else:
        main, dirs = SYSTEM_REGISTRIES_CONF, [system_dir, user_dir]
    files = [main] if main.is_file() else []
    for folder in dirs:
        try:
            files += sorted(p for p in folder.iterdir() if p.suffix == ".conf" and p.is_file())
        except OSError:
            continue
    return files


def registry_entries(files: list[Path] | None = None) -> list[RegistryEntry]:
    """Every `[[registry]]` (and v1 `[registries.insecure]`) entry; a later file's
    entry replaces an earlier one with the same prefix, as in containers/image."""
    import tomllib  # only when a spec names a registry

    by_prefix: dict[str, RegistryEntry] = {}
    for path in registries_conf_files() if files is None else files:
        try:
            data = tomllib.loads(path.read_text())
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise TrustConfigError(f"cannot read {path}: {_reason(exc)}") from None
        for entry in _entries(data, path):
            by_prefix[entry.prefix] = entry
    return list(by_prefix.values())


def _entries(data: dict[str, Any], path: Path) -> list[RegistryEntry]:
    found: list[RegistryEntry] = []
    registries = data.get("registry", [])
    if not isinstance(registries, list):
        raise TrustConfigError(f"{path}: 'registry' must be an array of tables ([[registry]])")
    for item in registries:
        if not isinstance(item, dict):
            continue
        prefix = str(item.get("prefix") or item.get("location") or "")
        if prefix:
            found.append(RegistryEntry(prefix.rstrip("/"), item.get("insecure") is True, path))
    v1 = data.get("registries")
    if isinstance(v1, dict) and isinstance(v1.get("insecure"), dict):
        for host in v1["insecure"].get("registries") or []:
            found.append(RegistryEntry(str(host).rstrip("/"), True, path))
    return found


def find_registry(reference: str, entries: list[RegistryEntry] | None = None
                  ) -> RegistryEntry | None:
    """The entry whose prefix matches `reference` (host[:port]/path) longest."""
    best: tuple[int, RegistryEntry | None] = (-1, None)
    for entry in registry_entries() if entries is None else entries:
        length = _matching_prefix(reference, entry.prefix)
        if length > best[0]:
            best = (length, entry)
    return best[1]


def _matching_prefix(ref: str, prefix: str) -> int:
    """containers/image's refMatchingPrefix: a prefix ends at `/`, `:`, `@` or the end;
    `*.example.com` matches any subdomain's host."""
    if prefix.startswith("*."):
        index = ref.find(prefix[1:])
        if index == -1 or "/" in ref[:index]:
            return -1
        index += len(prefix) - 1
    elif ref.startswith(prefix):
        index = len(prefix)
    else:
        return -1
    if index == len(ref) or ref[index] in ":/@":
        return index
    return -1


def _reason(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return str(text).splitlines()[0]
