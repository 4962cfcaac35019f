"""Registry adapter: the few questions cpb asks an OCI registry, over its HTTP API.

cpb only needs "which manifest does `<image>:<tag>` name?" (a HEAD request)
and "give `<image>` another tag for a manifest it already has" (a manifest
GET and PUT). Both go straight to the registry's HTTP API v2 from this
process: one request, no program started, which is what keeps `cpb plan`
and a no-op `cpb build --push` cheap. Moving image bytes is left to podman
and skopeo (see `push.py`).

Credentials come only from the auth file podman and skopeo use
(`REGISTRY_AUTH_FILE`, else `$XDG_RUNTIME_DIR/containers/auth.json`, else
`~/.config/containers/auth.json`, else `~/.docker/config.json`); they are
never taken from the spec and never logged or put in an error message.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import ssl
import threading
import urllib.error
import urllib.parse
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from cpb.errors import BuildError, EnvironmentProblem
from cpb.spec.model import RegistrySpec

log = logging.getLogger(__name__)

# Every manifest kind cpb can meet; without these a registry may answer with
# an old schema-1 manifest, whose digest is not the one podman pushed.
MANIFEST_TYPES = (
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)
DEFAULT_TIMEOUT = 10.0  # seconds per request: long enough for a slow link, short for a dead one
_CHALLENGE = re.compile(r'(\w+)="([^"]*)"')
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


class RegistryUnreachable(EnvironmentProblem):
    """The registry did not answer (refused, timed out, TLS failure)."""


class RegistryError(BuildError):
    """The registry answered, but not as expected (denied, bad request)."""


def auth_file() -> Path | None:
    """The auth file podman would use, if there is one."""
    candidates = []
    if os.environ.get("REGISTRY_AUTH_FILE"):
        candidates.append(Path(os.environ["REGISTRY_AUTH_FILE"]))
    if os.environ.get("XDG_RUNTIME_DIR"):
        candidates.append(Path(os.environ["XDG_RUNTIME_DIR"]) / "containers" / "auth.json")
    else:
        candidates.append(Path(f"/run/containers/{os.getuid()}/auth.json"))
    home = Path.home()
    candidates += [home / ".config" / "containers" / "auth.json", home / ".docker" / "config.json"]
    return next((c for c in candidates if c.is_file()), None)


def credentials_for(config: RegistrySpec, path: Path | None = None) -> tuple[str, str] | None:
    """(user, password) for the registry from the auth file, or None.

    Like podman, the most specific entry wins: `host/path` before `host`.
    """
    path = path if path is not None else auth_file()
    if path is None:
        return None
    try:
        auths: Mapping[str, Any] = json.loads(path.read_text()).get("auths") or {}
    except (OSError, ValueError, AttributeError):
        log.warning("cannot read the registry auth file %s; going on without credentials", path)
        return None
    keys = [config.url]
    parts = config.url.split("/")
    keys += ["/".join(parts[:n]) for n in range(len(parts) - 1, 0, -1)]
    for key in keys:
        for written in (key, f"https://{key}", f"http://{key}"):
            entry = auths.get(written)
            if isinstance(entry, Mapping) and entry.get("auth"):
                try:
                    user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
                except (ValueError, UnicodeDecodeError):
                    continue
                return user, password
    return None


class Registry:
    """A registry client for manifests, with podman's credentials.

    Thread-safe: doit runs tasks in threads and they share one client.
    """

    def __init__(self, config: RegistrySpec, *, timeout: float = DEFAULT_TIMEOUT,
                 auth_path: Path | None = None) -> None:
        self.config = config
        self.timeout = timeout
        self._auth_path = auth_path
        self._tokens: dict[str, str] = {}  # scope -> "Bearer ..." / "Basic ..."
        self._known: dict[tuple[str, str], str | None] = {}  # (image, tag) -> digest
        self._down: str | None = None  # why the registry did not answer, once it did not
        self._lock = threading.Lock()
        scheme = "https" if config.tls_verify else "http"
        self.base = f"{scheme}://{config.host}/v2/"
        self._context = ssl.create_default_context() if config.tls_verify else None

    # -- the questions ---------------------------------------------------------

    def manifest_digest(self, image: str, tag: str) -> str | None:
        """The digest of the manifest `<image>:<tag>` names, or None if there is none."""
        status, headers, _ = self._request("HEAD", image, f"manifests/{tag}", pull_only=True,
                                           accept=MANIFEST_TYPES)
        if status == 404:
            return None
        self._expect(status, (200,), f"looking up {self.config.ref(image, tag)}")
        digest = headers.get("docker-content-digest", "")
        if not _DIGEST.match(digest):
            # Every distribution-spec registry sends it; it becomes part of a
            # command line (`skopeo copy ...@<digest>`), so only a real one.
            raise RegistryError(f"registry {self.config.host} sent no usable manifest digest "
                                f"for {self.config.ref(image, tag)}")
        return digest

    def known_digest(self, image: str, tag: str) -> str | None:
        """`manifest_digest`, asked at most once per run for each tag."""
        with self._lock:
            if (image, tag) in self._known:
                return self._known[(image, tag)]
        digest = self.manifest_digest(image, tag)
        with self._lock:
            self._known[(image, tag)] = digest
        return digest

    def prefetch(self, wanted: Iterable[tuple[str, str]]) -> None:
        """Ask about several tags at once (in threads), for `known_digest` to answer."""
        with self._lock:
            todo = sorted({w for w in wanted if w not in self._known})
        if len(todo) < 2:
            return
        with ThreadPoolExecutor(max_workers=min(8, len(todo))) as pool:
            for future in [pool.submit(self.known_digest, *w) for w in todo]:
                future.result()

    def add_tag(self, image: str, digest: str, tag: str) -> None:
        """Point `<image>:<tag>` at the manifest `digest` the registry already has."""
        status, headers, body = self._request("GET", image, f"manifests/{digest}",
                                              accept=MANIFEST_TYPES)
        self._expect(status, (200,), f"reading {self.config.url}/{image}@{digest}")
        media_type = headers.get("content-type", MANIFEST_TYPES[0]).split(";")[0]
        status, _, _ = self._request("PUT", image, f"manifests/{tag}", body=body,
                                     content_type=media_type)
        self._expect(status, (201, 200), f"tagging {self.config.ref(image, tag)}")

    def check(self) -> None:
        """Raise `RegistryUnreachable` unless the registry answers at all."""
        self._send("GET", self.base, {}, None)

    # -- HTTP --------------------------------------------------------------------

    def _expect(self, status: int, ok: tuple[int, ...], doing: str) -> None:
        if status in ok:
            return
        if status in (401, 403):
            raise RegistryError(f"registry {self.config.host} denied access while {doing} "
                                f"(HTTP {status}); log in with `podman login {self.config.host}`"
                                " (cpb reads podman's auth file)")
        raise RegistryError(f"registry {self.config.host} answered HTTP {status} while {doing}")

    def _request(self, method: str, image: str, tail: str, *, pull_only: bool = False,
                 accept: tuple[str, ...] = (), body: bytes | None = None,
                 content_type: str | None = None) -> tuple[int, Mapping[str, str], bytes]:
        repository = self.config.repository(image)
        scope = f"repository:{repository}:{'pull' if pull_only else 'pull,push'}"
        url = self.base + f"{urllib.parse.quote(repository)}/{tail}"
        headers = {"Accept": ", ".join(accept)} if accept else {}
        if content_type:
            headers["Content-Type"] = content_type
        with self._lock:
            authorization = self._tokens.get(scope)
        if authorization:
            headers["Authorization"] = authorization
        status, reply_headers, reply = self._send(method, url, headers, body)
        if status == 401 and not authorization:
            authorization = self._authorize(reply_headers.get("www-authenticate", ""), scope)
            if authorization:
                with self._lock:
                    self._tokens[scope] = authorization
                headers["Authorization"] = authorization
                status, reply_headers, reply = self._send(method, url, headers, body)
        return status, reply_headers, reply

    def _authorize(self, challenge: str, scope: str) -> str | None:
        """An Authorization header answering a 401 challenge, from the auth file."""
        creds = credentials_for(self.config, self._auth_path)
        scheme = challenge.split(" ", 1)[0].lower()
        basic = None
        if creds is not None:
            basic = "Basic " + base64.b64encode(f"{creds[0]}:{creds[1]}".encode()).decode()
        if scheme == "basic":
            return basic
        if scheme != "bearer":
            return None
        params = dict(_CHALLENGE.findall(challenge))
        realm = params.get("realm")
        if not realm:
            return None
        query = {"scope": scope, **({"service": params["service"]} if "service" in params else {})}
        headers = {"Authorization": basic} if basic else {}
        status, _, body = self._send("GET", f"{realm}?{urllib.parse.urlencode(query)}",
                                     headers, None)
        if status != 200:
            return None
        try:
            answer = json.loads(body)
            token = answer.get("token") or answer.get("access_token")
        except (ValueError, AttributeError):
            return None
        return f"Bearer {token}" if token else None

    def _send(self, method: str, url: str, headers: Mapping[str, str],
              body: bytes | None) -> tuple[int, Mapping[str, str], bytes]:
        if self._down is not None:
            # One timeout per run is enough: every later request would wait as long.
            raise RegistryUnreachable(self._down)
        import urllib.request  # imported when asking: a no-op run need not pay for it

        # Only http(s): `url` is built from self.base or a registry's token realm.
        request = urllib.request.Request(url, data=body, method=method,  # noqa: S310
                                         headers=dict(headers))
        log.debug("registry %s %s", method, url)  # never the headers: they carry credentials
        try:
            with urllib.request.urlopen(request, timeout=self.timeout,  # noqa: S310
                                        context=self._context) as reply:
                return reply.status, _lower(reply.headers.items()), reply.read()
        except urllib.error.HTTPError as exc:
            with exc:
                return exc.code, _lower(exc.headers.items()), exc.read()
        except (TimeoutError, urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            if isinstance(reason, TimeoutError):
                why = f"no answer within {self.timeout:g} s"
            else:
                why = str(reason) or type(reason).__name__
            hint = ""
            if isinstance(reason, ssl.SSLError) and self.config.tls_verify:
                hint = "; for a plain-HTTP registry set `registry: {tls_verify: false}`"
            self._down = (f"registry unreachable: {self.config.host} ({why}){hint}; "
                          "images built so far are kept")
            raise RegistryUnreachable(self._down) from None


def _lower(items: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Header names in lower case: proxies do not all keep the registry's spelling."""
    return {key.lower(): value for key, value in items}
