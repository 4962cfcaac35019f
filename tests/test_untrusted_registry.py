"""The registry client on a registry that tries to get the credentials elsewhere (issue 19).

Real servers on loopback play the parts: a registry over HTTPS on 127.0.0.1
(its test CA found the way podman finds it, in `~/.config/containers/certs.d`,
with HOME pointed at the test's folder) that redirects or names a token
service, and a second host on 127.0.0.2 that records every header it gets.
"""

from __future__ import annotations

import base64
import json
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from cpb.adapters.registry import Registry, RegistryError
from cpb.spec.model import RegistrySpec
from tlscerts import Pki, make_pki

SECRET = "hunter2-registry-pw"
BASIC = "Basic " + base64.b64encode(f"ci:{SECRET}".encode()).decode()
DIGEST = "sha256:" + "cd" * 32
Reply = tuple[int, dict[str, str], bytes]


@dataclass
class Host:
    """A loopback HTTP(S) server: `route(handler) -> (status, headers, body)`."""

    server: ThreadingHTTPServer
    scheme: str
    seen: list[dict[str, str]] = field(default_factory=list)  # headers of every request

    @property
    def origin(self) -> str:
        host, port = self.server.server_address[:2]
        return f"{self.scheme}://{host}:{port}"

    @property
    def host(self) -> str:
        host, port = self.server.server_address[:2]
        return f"{host}:{port}"

    def authorizations(self) -> list[str]:
        return [h["authorization"] for h in self.seen if "authorization" in h]


def _serve(address: str, route: Callable[[BaseHTTPRequestHandler], Reply],
           context: ssl.SSLContext | None) -> Host:
    host: Host

    class Handler(BaseHTTPRequestHandler):
        timeout = 5  # a client speaking TLS to a plain port must not hang the test

        def log_message(self, *args: Any) -> None:
            pass

        def _any(self) -> None:
            host.seen.append({k.lower(): v for k, v in self.headers.items()}
                             | {":path": self.path, ":method": self.command})
            status, headers, body = route(self)
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = _any  # noqa: N815

    server = ThreadingHTTPServer((address, 0), Handler)
    if context is not None:
        server.socket = context.wrap_socket(server.socket, server_side=True)
    host = Host(server, "https" if context else "http")
    # a short poll: shutdown() returns at once instead of after serve_forever's 0.5 s
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01},
                     daemon=True).start()
    return host


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path / "pki", ips=("127.0.0.1", "127.0.0.2"))


@pytest.fixture
def serve(pki: Pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
          ) -> Iterator[Callable[..., Host]]:
    """serve(route, address=, tls=) -> Host; an HTTPS host's CA goes into the
    test HOME's certs.d folder for it, as a user would install it for podman."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CONTAINERS_REGISTRIES_CONF", str(tmp_path / "no-registries.conf"))
    hosts: list[Host] = []

    def start(route: Callable[[BaseHTTPRequestHandler], Reply], address: str = "127.0.0.1",
              tls: bool = True) -> Host:
        context = None
        if tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(pki.server_cert, pki.server_key)
        host = _serve(address, route, context)
        if tls:
            folder = tmp_path / "home/.config/containers/certs.d" / host.host
            folder.mkdir(parents=True)
            (folder / "ca.crt").write_bytes(pki.ca.read_bytes())
        hosts.append(host)
        return host

    yield start
    for host in hosts:
        host.server.shutdown()
        host.server.server_close()


def auth_file(tmp_path: Path, registry: Host) -> Path:
    path = tmp_path / "auth.json"
    path.write_text(json.dumps({"auths": {registry.host: {
        "auth": base64.b64encode(f"ci:{SECRET}".encode()).decode()}}}))
    return path


def client(registry: Host, tmp_path: Path) -> Registry:
    return Registry(RegistrySpec(f"{registry.host}/farm"), timeout=5,
                    auth_path=auth_file(tmp_path, registry))


def basic_registry(redirect_to: Callable[[], str]) -> Callable[[BaseHTTPRequestHandler], Reply]:
    """Basic auth; once the credentials come, every manifest is a redirect."""

    def route(handler: BaseHTTPRequestHandler) -> Reply:
        if handler.headers.get("Authorization") != BASIC:
            return 401, {"WWW-Authenticate": 'Basic realm="test"'}, b""
        return 302, {"Location": redirect_to()}, b""

    return route


def manifest(handler: BaseHTTPRequestHandler) -> Reply:
    return 200, {"Docker-Content-Digest": DIGEST,
                 "Content-Type": "application/vnd.oci.image.manifest.v1+json"}, b"{}"


# -- redirects -----------------------------------------------------------------------

@pytest.mark.parametrize("foreign", ["http://127.0.0.2", "https://127.0.0.2",
                                     "https://127.0.0.1"])
def test_a_redirect_to_another_host_gets_no_credentials(
        serve: Callable[..., Host], tmp_path: Path, foreign: str) -> None:
    scheme, address = foreign.split("://")
    other = serve(manifest, address=address, tls=scheme == "https")
    registry = serve(basic_registry(lambda: f"{other.origin}/v2/farm/base/manifests/x"))
    assert client(registry, tmp_path).manifest_digest("base", "x") == DIGEST
    assert BASIC in registry.authorizations()  # the registry itself did get them
    assert other.seen and other.authorizations() == []
    assert other.seen[0][":method"] == "HEAD"  # and the HEAD stayed a HEAD


def test_a_redirect_within_the_registry_keeps_the_credentials(
        serve: Callable[..., Host], tmp_path: Path) -> None:
    # The same check as above, able to fail: here the header must survive.
    def route(handler: BaseHTTPRequestHandler) -> Reply:
        if handler.headers.get("Authorization") != BASIC:
            return 401, {"WWW-Authenticate": 'Basic realm="test"'}, b""
        if handler.path.endswith("/moved"):
            return manifest(handler)
        return 307, {"Location": "/v2/farm/base/manifests/moved"}, b""

    registry = serve(route)
    assert client(registry, tmp_path).manifest_digest("base", "x") == DIGEST
    assert registry.seen[-1][":path"].endswith("/moved")
    assert registry.seen[-1]["authorization"] == BASIC


def test_a_redirect_to_plain_http_on_the_same_host_drops_the_credentials(
        serve: Callable[..., Host], tmp_path: Path) -> None:
    plain = serve(manifest, tls=False)
    registry = serve(basic_registry(lambda: f"{plain.origin}/v2/farm/base/manifests/x"))
    assert client(registry, tmp_path).manifest_digest("base", "x") == DIGEST
    assert plain.seen and plain.authorizations() == []


@pytest.mark.parametrize("target", ["ftp://127.0.0.2/x", "file:///etc/passwd"])
def test_a_redirect_to_another_scheme_is_refused(serve: Callable[..., Host], tmp_path: Path,
                                                 target: str) -> None:
    registry = serve(basic_registry(lambda: target))
    with pytest.raises(RegistryError) as info:
        client(registry, tmp_path).manifest_digest("base", "x")
    assert str(info.value) == (f"registry {registry.host}: redirected to {target}, which cpb "
                               "does not follow (only http:// and https://)")


def test_a_challenge_from_the_redirect_target_is_not_answered(
        serve: Callable[..., Host], tmp_path: Path) -> None:
    """The registry sends us, unauthenticated, to a host that asks for credentials
    and names its own token service: neither sees the registry's password."""
    def foreign_route(handler: BaseHTTPRequestHandler) -> Reply:
        if handler.path.startswith("/token"):
            return 200, {}, json.dumps({"token": "stolen"}).encode()
        return 401, {"WWW-Authenticate": f'Basic realm="x", Bearer realm="{foreign.origin}'
                                         '/token"'}, b""

    foreign = serve(foreign_route, address="127.0.0.2", tls=False)
    registry = serve(lambda h: (302, {"Location": f"{foreign.origin}/v2/x"}, b""))
    with pytest.raises(RegistryError, match="denied access"):
        client(registry, tmp_path).manifest_digest("base", "x")
    assert foreign.authorizations() == [] and registry.authorizations() == []
    assert not [s for s in foreign.seen if s[":path"].startswith("/token")]


# -- token services (Bearer realms) ----------------------------------------------------------

def token_registry(realm: Callable[[], str]) -> Callable[[BaseHTTPRequestHandler], Reply]:
    def route(handler: BaseHTTPRequestHandler) -> Reply:
        if handler.headers.get("Authorization") == "Bearer tok-1":
            return manifest(handler)
        return 401, {"WWW-Authenticate": f'Bearer realm="{realm()}",service="reg"'}, b""

    return route


def token_service(handler: BaseHTTPRequestHandler) -> Reply:
    if handler.headers.get("Authorization") != BASIC:
        return 401, {}, b""
    return 200, {}, json.dumps({"token": "tok-1"}).encode()


def test_a_plain_http_realm_on_another_host_gets_no_credentials(
        serve: Callable[..., Host], tmp_path: Path) -> None:
    realm = serve(token_service, address="127.0.0.2", tls=False)
    registry = serve(token_registry(lambda: f"{realm.origin}/token"))
    with pytest.raises(RegistryError) as info:
        client(registry, tmp_path).manifest_digest("base", "x")
    assert realm.seen and realm.authorizations() == []  # asked, anonymously
    message = str(info.value)
    assert "denied access" in message and SECRET not in message
    assert (f"credentials were not sent to the token service {realm.origin}/token "
            "(plain HTTP to a host other than the registry's)") in message


@pytest.mark.parametrize("where", ["https://127.0.0.2", "http://127.0.0.1"])
def test_credentials_go_to_an_https_realm_or_one_on_the_registrys_own_host(
        serve: Callable[..., Host], tmp_path: Path, where: str) -> None:
    scheme, address = where.split("://")
    realm = serve(token_service, address=address, tls=scheme == "https")
    registry = serve(token_registry(lambda: f"{realm.origin}/token"))
    assert client(registry, tmp_path).manifest_digest("base", "x") == DIGEST
    assert realm.authorizations() == [BASIC]
    assert registry.authorizations() == ["Bearer tok-1"]


def test_a_realm_that_is_not_http_is_not_opened(serve: Callable[..., Host],
                                                tmp_path: Path) -> None:
    secret_file = tmp_path / "token.json"
    secret_file.write_text(json.dumps({"token": "from-a-local-file"}))
    registry = serve(token_registry(lambda: secret_file.as_uri()))
    with pytest.raises(RegistryError, match="denied access"):
        client(registry, tmp_path).manifest_digest("base", "x")
    assert "Bearer from-a-local-file" not in registry.authorizations()


def test_the_token_request_is_not_redirected_with_the_credentials(
        serve: Callable[..., Host], tmp_path: Path) -> None:
    foreign = serve(token_service, address="127.0.0.2", tls=False)
    realm = serve(lambda h: (302, {"Location": f"{foreign.origin}/token"}, b""))
    registry = serve(token_registry(lambda: f"{realm.origin}/token"))
    with pytest.raises(RegistryError, match="denied access"):
        client(registry, tmp_path).manifest_digest("base", "x")
    assert realm.authorizations() == [BASIC]  # https: the realm may have them
    assert foreign.seen and foreign.authorizations() == []
