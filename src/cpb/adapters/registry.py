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
from typing import TYPE_CHECKING, Any

from cpb.adapters import redirects
from cpb.adapters.trust import (
    RegistryEntry,
    TlsFiles,
    find_registry,
    suggested_certs_dir,
    tls_files,
)
from cpb.errors import EXIT_ENVIRONMENT, BuildError, EnvironmentProblem
from cpb.spec.model import RegistrySpec

if TYPE_CHECKING:
    import urllib.request

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
    """The registry did not answer (refused, timed out, TLS failure).

    `kind` says which: "down", "timeout", "certificate" (not trusted),
    "client-certificate" (mutual TLS refused), "plain-http", "tls"."""

    def __init__(self, message: str, *, kind: str = "down") -> None:
        super().__init__(message)
        self.kind = kind


class RegistryError(BuildError):
    """The registry answered, but not as expected (denied, bad request)."""


class RegistryDenied(RegistryError):
    """The registry refused the login (HTTP 401/403): the environment's fault,
    exit 3, so that a CI gate can tell it from `--exit-code`'s "work pending"."""

    exit_code = EXIT_ENVIRONMENT


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
    """A registry client for manifests, with podman's credentials and trust.

    Thread-safe: doit runs tasks in threads and they share one client.

    Like podman (containers/image): the CAs and client certificate come from
    the registry's certs.d folder (see trust.py); a registry that is not
    verified (`tls_verify: false`, or `insecure = true` in registries.conf) is
    tried over HTTPS without checking its certificate, then over plain HTTP.
    Unlike urllib's defaults, credentials never follow a redirect to another
    origin, go to a token service over plain HTTP only on the registry's own
    host, and a redirect to anything but http(s) is refused.
    """

    def __init__(self, config: RegistrySpec, *, timeout: float = DEFAULT_TIMEOUT,
                 auth_path: Path | None = None) -> None:
        self.config = config
        self.timeout = timeout
        self._auth_path = auth_path
        self._tokens: dict[str, str] = {}  # scope -> "Bearer ..." / "Basic ..."
        self._known: dict[tuple[str, str], str | None] = {}  # (image, tag) -> digest
        self._down: str | None = None  # why the registry did not answer, once it did not
        self._withheld: str | None = None  # credentials cpb chose not to send, and why
        self._lock = threading.Lock()
        self._setup_lock = threading.Lock()
        self._scheme: str | None = None  # "https" or "http", once known
        self._trust: tuple[TlsFiles, RegistryEntry | None] | None = None
        self._opener: urllib.request.OpenerDirector | None = None

    # -- trust, read once and only when a question is asked -----------------------

    def _trust_files(self) -> tuple[TlsFiles, RegistryEntry | None]:
        with self._setup_lock:
            if self._trust is None:
                entry = find_registry(self.config.url)
                self._trust = (tls_files(self.config.host), entry)
            return self._trust

    @property
    def auth_path(self) -> Path | None:
        """The auth file credentials come from (None: there is none)."""
        return self._auth_path if self._auth_path is not None else auth_file()

    @property
    def tls_files(self) -> TlsFiles:
        return self._trust_files()[0]

    @property
    def insecure_entry(self) -> RegistryEntry | None:
        """The registries.conf entry that marks this registry insecure, if one does."""
        entry = self._trust_files()[1]
        return entry if entry is not None and entry.insecure else None

    @property
    def verify(self) -> bool:
        """Check the registry's certificate: what `--tls-verify` podman and skopeo get."""
        return self.config.tls_verify and self.insecure_entry is None

    @property
    def base(self) -> str:
        """The registry's API root, e.g. `https://reg.example:5000/v2/`."""
        return f"{self._scheme or 'https'}://{self.config.host}/v2/"

    def _open(self) -> urllib.request.OpenerDirector:
        with self._lock:
            if self._opener is not None:
                return self._opener
        import urllib.request  # a no-op run need not pay for it

        context = self.tls_files.context(self.verify)
        built = redirects.opener(urllib.request.HTTPSHandler(context=context))
        with self._lock:
            self._opener = self._opener or built
            return self._opener

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
        # One question first: it settles the scheme and the token for the rest.
        self.known_digest(*todo[0])
        with ThreadPoolExecutor(max_workers=min(8, len(todo) - 1)) as pool:
            for future in [pool.submit(self.known_digest, *w) for w in todo[1:]]:
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

    def check(self) -> int:
        """The HTTP status of `GET /v2/` (200, or 401 when it wants credentials);
        `RegistryUnreachable` unless the registry answers at all."""
        return self._send_registry("GET", "", {}, None)[0]

    def can_read(self, image: str) -> int:
        """The status of a pull-scoped, authenticated `GET /v2/` for `image`'s
        repository: 200 when the credentials (if needed) are accepted."""
        return self._request("GET", image, "", pull_only=True, api_root=True)[0]

    def can_push(self, image: str) -> int:
        """Start a blob upload to `image`'s repository and cancel it at once: the
        status says whether pushing is allowed (202), and nothing is left behind."""
        status, headers, _ = self._request("POST", image, "blobs/uploads/", body=b"")
        location = headers.get("location", "")
        if status == 202 and location:
            target = urllib.parse.urljoin(self.base, location)
            if redirects.origin(target) == redirects.origin(self.base):
                with self._lock:
                    authorization = self._tokens.get(self._scope(image, False))
                self._send("DELETE", target,
                           {"Authorization": authorization} if authorization else {}, None)
        return status

    # -- HTTP --------------------------------------------------------------------

    def _expect(self, status: int, ok: tuple[int, ...], doing: str) -> None:
        if status in ok:
            return
        if status in (401, 403):
            withheld = f"; {self._withheld}" if self._withheld else ""
            raise RegistryDenied(f"registry {self.config.host} denied access while {doing} "
                                f"(HTTP {status}); log in with `podman login {self.config.host}`"
                                f" (cpb reads podman's auth file){withheld}")
        raise RegistryError(f"registry {self.config.host} answered HTTP {status} while {doing}")

    def _scope(self, image: str, pull_only: bool) -> str:
        repository = self.config.repository(image)
        return f"repository:{repository}:{'pull' if pull_only else 'pull,push'}"

    def _request(self, method: str, image: str, tail: str, *, pull_only: bool = False,
                 accept: tuple[str, ...] = (), body: bytes | None = None,
                 content_type: str | None = None, api_root: bool = False
                 ) -> tuple[int, Mapping[str, str], bytes]:
        scope = self._scope(image, pull_only)
        path = "" if api_root else f"{urllib.parse.quote(self.config.repository(image))}/{tail}"
        headers = {"Accept": ", ".join(accept)} if accept else {}
        if content_type:
            headers["Content-Type"] = content_type
        with self._lock:
            authorization = self._tokens.get(scope)
        if authorization:
            headers["Authorization"] = authorization
        status, reply_headers, reply, final = self._send_registry(method, path, headers, body)
        # A challenge counts only from the registry itself, not from wherever it
        # redirected us: that host's realm must not learn the credentials.
        if (status == 401 and not authorization
                and redirects.origin(final) == redirects.origin(self.base)):
            authorization = self._authorize(reply_headers.get("www-authenticate", ""), scope)
            if authorization:
                with self._lock:
                    self._tokens[scope] = authorization
                headers["Authorization"] = authorization
                status, reply_headers, reply, _ = self._send_registry(method, path, headers, body)
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
        realm = params.get("realm", "")
        realm_scheme, realm_host, _ = redirects.origin(realm)
        if realm_scheme not in redirects.FOLLOWED_SCHEMES or not realm_host:
            log.warning("registry %s named a token service that is not an http(s) URL; "
                        "not asking it", self.config.host)
            return None
        registry_host = redirects.origin(self.base)[1]
        if basic and realm_scheme != "https" and realm_host != registry_host:
            # Plain HTTP to another host would show the password to the network.
            self._withheld = (f"credentials were not sent to the token service {realm} "
                              "(plain HTTP to a host other than the registry's)")
            log.warning("registry %s: %s", self.config.host, self._withheld)
            basic = None
        query = {"scope": scope, **({"service": params["service"]} if "service" in params else {})}
        headers = {"Authorization": basic} if basic else {}
        separator = "&" if urllib.parse.urlsplit(realm).query else "?"
        status, _, body, _ = self._send("GET", f"{realm}{separator}"
                                        f"{urllib.parse.urlencode(query)}", headers, None)
        if status != 200:
            return None
        try:
            answer = json.loads(body)
            token = answer.get("token") or answer.get("access_token")
        except (ValueError, AttributeError):
            return None
        return f"Bearer {token}" if isinstance(token, str) and token else None

    def _send_registry(self, method: str, path: str, headers: Mapping[str, str],
                       body: bytes | None) -> tuple[int, Mapping[str, str], bytes, str]:
        """A request to the registry itself; finds its scheme on the first one."""
        if self._scheme is not None:
            return self._send(method, self.base + path, headers, body)
        try:
            answer = self._send(method, f"https://{self.config.host}/v2/{path}", headers, body,
                                keep_down=False)
        except _Failed as https_failed:
            if self.verify or https_failed.timed_out:
                self._down = self._explain(https_failed)
                raise RegistryUnreachable(self._down, kind=https_failed.kind) from None
            # Not verified: podman then tries plain HTTP (an insecure registry).
            try:
                answer = self._send(method, f"http://{self.config.host}/v2/{path}", headers,
                                    body, keep_down=False)
            except _Failed as http_failed:
                self._down = self._explain(http_failed)
                raise RegistryUnreachable(self._down, kind=http_failed.kind) from None
            self._scheme = "http"
            return answer
        self._scheme = "https"
        return answer

    def _send(self, method: str, url: str, headers: Mapping[str, str], body: bytes | None,
              *, keep_down: bool = True) -> tuple[int, Mapping[str, str], bytes, str]:
        """(status, headers, body, final URL after redirects)."""
        if self._down is not None:
            # One timeout per run is enough: every later request would wait as long.
            raise RegistryUnreachable(self._down)
        import urllib.request

        # Only http(s): the opener has no other handler, and realms are checked.
        request = urllib.request.Request(url, data=body, method=method,  # noqa: S310
                                         headers=dict(headers))
        log.debug("registry %s %s", method, url)  # never the headers: they carry credentials
        try:
            with self._open().open(request, timeout=self.timeout) as reply:
                return reply.status, _lower(reply.headers.items()), reply.read(), reply.url
        except redirects.RedirectRefused as exc:
            raise RegistryError(f"registry {self.config.host}: {exc}") from None
        except urllib.error.HTTPError as exc:
            with exc:
                return exc.code, _lower(exc.headers.items()), exc.read(), exc.url or url
        except (TimeoutError, urllib.error.URLError, OSError) as exc:
            # An SSLError has a `reason` too (a string): only a URLError wraps one.
            reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
            failed = _Failed(reason, url)
            if not keep_down:
                raise failed from None
            self._down = self._explain(failed)
            raise RegistryUnreachable(self._down, kind=failed.kind) from None

    # -- why it failed --------------------------------------------------------------

    def _explain(self, failed: _Failed) -> str:
        host = self.config.host
        end = ""  # the CLI adds what to do: it knows the command
        reason = failed.reason
        if failed.timed_out:
            return f"registry unreachable: {host} (no answer within {self.timeout:g} s){end}"
        why = _short(reason)
        if isinstance(reason, ssl.SSLCertVerificationError):
            return self._certificate_problem(reason) + end
        if isinstance(reason, ssl.SSLError):
            code = (reason.reason or "").upper()
            if code in _CLIENT_CERT_ALERTS:
                failed.kind = "client-certificate"
                return self._client_certificate_problem(why) + end
            if self.verify and failed.url.startswith("https:") and self._speaks_http():
                failed.kind = "plain-http"
                return (f"registry {host} answers in plain HTTP, not HTTPS ({why}); if it is "
                        "meant to, set `registry: {tls_verify: false}` in cpb.yaml (or mark it "
                        f"`insecure = true` in registries.conf){end}")
            failed.kind = "tls"
            hint = ""
            if isinstance(reason, ssl.SSLEOFError) and self.tls_files.client is None:
                # Some servers hang up instead of sending an alert.
                folder = self.tls_files.folder or suggested_certs_dir(host)
                hint = (f"; if it requires a client certificate (mutual TLS), put NAME.cert "
                        f"and NAME.key in {folder}/")
            return f"registry {host}: TLS failed ({why}){hint}{end}"
        return f"registry unreachable: {host} ({why}){end}"

    def _certificate_problem(self, error: ssl.SSLCertVerificationError) -> str:
        host = self.config.host
        what = error.verify_message or _short(error)
        files = self.tls_files
        if error.verify_code in _UNKNOWN_ISSUER:
            if files.folder is not None and files.cas:
                where = (f"the CA certificates in {files.folder} "
                         f"({', '.join(p.name for p in files.cas)}) did not sign it; put the "
                         f"registry's CA certificate there as a *.crt file")
            else:
                folder = files.folder or suggested_certs_dir(host)
                where = (f"put the CA certificate that signed it in {folder}/ca.crt, where "
                         "podman and skopeo look too")
            return (f"registry {host}: its TLS certificate is not trusted here ({what}); "
                    f"{where}")
        return (f"registry {host}: its TLS certificate was refused ({what}); the registry "
                "needs a valid certificate for this name")

    def _client_certificate_problem(self, why: str) -> str:
        host = self.config.host
        files = self.tls_files
        if files.client is not None:
            return (f"registry {host} refused the client certificate {files.client[0]} "
                    f"({why}); it needs one signed by a CA the registry accepts")
        folder = files.folder or suggested_certs_dir(host)
        return (f"registry {host} requires a client certificate (mutual TLS) and none was "
                f"found ({why}); put NAME.cert and NAME.key in {folder}/, where podman "
                "looks too")

    def _speaks_http(self) -> bool:
        """Whether the registry's port answers plain HTTP: a GET of /v2/ over http."""
        import urllib.request

        request = urllib.request.Request(f"http://{self.config.host}/v2/")  # noqa: S310
        try:
            with redirects.opener().open(request, timeout=min(self.timeout, 5.0)) as reply:
                return bool(reply.status)
        except urllib.error.HTTPError as exc:
            exc.close()
            # An HTTPS server answers a plain request with 400 and says so.
            return not (exc.code == 400 and b"HTTPS" in exc.read()[:200])
        except (urllib.error.URLError, OSError):
            return False


class _Failed(Exception):
    """A request that got no HTTP answer."""

    def __init__(self, reason: object, url: str) -> None:
        super().__init__(str(reason))
        self.reason, self.url = reason, url
        self.timed_out = isinstance(reason, TimeoutError)
        self.kind = "certificate" if isinstance(reason, ssl.SSLCertVerificationError) else (
            "timeout" if self.timed_out else "down")


# OpenSSL's verify codes for "signed by a CA this machine does not know".
_UNKNOWN_ISSUER = frozenset({2, 18, 19, 20, 21})
# Alerts a server sends when it wants a (valid) client certificate.
_CLIENT_CERT_ALERTS = frozenset({"TLSV13_ALERT_CERTIFICATE_REQUIRED", "SSLV3_ALERT_BAD_CERTIFICATE",
                                 "TLSV1_ALERT_UNKNOWN_CA", "SSLV3_ALERT_CERTIFICATE_UNKNOWN",
                                 "SSLV3_ALERT_HANDSHAKE_FAILURE"})


def _short(reason: object) -> str:
    if isinstance(reason, OSError) and reason.strerror and not isinstance(reason, ssl.SSLError):
        return str(reason.strerror)
    text = str(reason) or type(reason).__name__
    return text.splitlines()[0]


def _lower(items: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Header names in lower case: proxies do not all keep the registry's spelling."""
    return {key.lower(): value for key, value in items}
