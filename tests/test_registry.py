"""The registry client: auth from podman's auth file, bounded timeouts, no registry, no query.

The HTTP servers here are real ones on loopback (http.server), speaking just
enough of the distribution API to exercise each path.
"""

from __future__ import annotations

import base64
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from cpb.adapters.registry import Registry, RegistryError, RegistryUnreachable, credentials_for
from cpb.errors import SpecError
from cpb.graph import expand_graph
from cpb.spec.model import RegistrySpec, load_spec
from cpb.tasks.table import TASK_KINDS
from fakes import FakeRunner
from helpers import build_file_tree

DIGEST = "sha256:" + "ab" * 32
SECRET = "s3cret-pa55"


def spec_file(tmp_path: Path, registry: str = "") -> Path:
    build_file_tree(tmp_path, {
        "cpb.yaml": f"project: farm\n{registry}images:\n  base:\n    rootfs: {{tar: b.tar}}\n",
        "b.tar": "x"})
    return tmp_path / "cpb.yaml"


def auth_json(tmp_path: Path, host: str, user: str = "ci", password: str = SECRET) -> Path:
    path = tmp_path / "auth.json"
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    path.write_text(json.dumps({"auths": {host: {"auth": token}}}))
    return path


# -- spec --------------------------------------------------------------------------

def test_registry_key_is_parsed_with_tls_verify_on_by_default(tmp_path: Path) -> None:
    spec = load_spec(spec_file(tmp_path, "registry:\n  url: reg.example:5000/farm/\n"))
    assert spec.registry == RegistrySpec(url="reg.example:5000/farm", tls_verify=True)
    assert spec.registry.ref("base", "cpb-0123") == "reg.example:5000/farm/base:cpb-0123"
    assert spec.registry.repository("base") == "farm/base"
    graph = expand_graph(spec, TASK_KINDS)
    assert ("tag:base", "push:base") in graph.edges


def test_no_registry_no_push_tasks(tmp_path: Path) -> None:
    spec = load_spec(spec_file(tmp_path))
    assert spec.registry is None
    assert not [t for t in expand_graph(spec, TASK_KINDS) if t.startswith("push:")]


@pytest.mark.parametrize(("text", "message"), [
    ("registry:\n  url: https://reg.example\n", "has a scheme; write host[:port][/path]"),
    ("registry:\n  url: reg.example:0/farm\n", "is not host[:port][/path] (no scheme, a port"),
    ("registry:\n  tls_verify: false\n", "missing required key 'url'"),
    ("registry:\n  url: reg.example\n  tls_verfy: false\n", "did you mean 'tls_verify'?"),
    ("registry:\n  url: reg.example\n  password: x\n", "unknown key 'password'"),
])
def test_bad_registry_keys_are_spec_errors(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(SpecError) as info:
        load_spec(spec_file(tmp_path, text))
    assert message in str(info.value) and str(info.value).startswith("cpb.yaml:")


# -- credentials -------------------------------------------------------------------------

def test_credentials_come_from_the_auth_file_most_specific_first(tmp_path: Path) -> None:
    path = tmp_path / "auth.json"
    entries = {"reg.example": "host:one", "reg.example/farm": "path:two"}
    path.write_text(json.dumps({"auths": {
        k: {"auth": base64.b64encode(v.encode()).decode()} for k, v in entries.items()}}))
    assert credentials_for(RegistrySpec("reg.example/farm"), path) == ("path", "two")
    assert credentials_for(RegistrySpec("reg.example/other"), path) == ("host", "one")
    assert credentials_for(RegistrySpec("elsewhere"), path) is None


def test_registry_auth_file_env_is_honoured(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(auth_json(tmp_path, "reg.example")))
    assert credentials_for(RegistrySpec("reg.example")) == ("ci", SECRET)


# -- a fake-but-real registry on loopback ---------------------------------------------------

class Handler(BaseHTTPRequestHandler):
    """Token auth like Docker Hub / GitLab: 401 + Bearer challenge, a token endpoint."""

    seen: list[tuple[str, str, str]] = []  # (method, path, authorization)

    def log_message(self, *args: Any) -> None:
        pass

    def _reply(self, status: int, headers: dict[str, str], body: bytes = b"") -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_HEAD(self) -> None:  # noqa: N802
        self.do_GET()

    def do_GET(self) -> None:  # noqa: N802
        auth = self.headers.get("Authorization", "")
        self.seen.append((self.command, self.path, auth))
        host = f"127.0.0.1:{self.server.server_address[1]}"
        if self.path.startswith("/token"):
            good = "Basic " + base64.b64encode(f"ci:{SECRET}".encode()).decode()
            if auth != good:
                return self._reply(401, {})
            return self._reply(200, {}, json.dumps({"token": "tok-123"}).encode())
        if auth != "Bearer tok-123":
            challenge = (f'Bearer realm="http://{host}/token",service="test",'
                         f'scope="repository:farm/base:pull"')
            return self._reply(401, {"WWW-Authenticate": challenge})
        if self.path.endswith("/manifests/present"):
            return self._reply(200, {"Docker-Content-Digest": DIGEST,
                                     "Content-Type": "application/vnd.oci.image.manifest.v1+json"},
                               b"{}")
        return self._reply(404, {})


@pytest.fixture
def token_registry() -> Iterator[str]:
    Handler.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    # a short poll: shutdown() returns at once instead of after serve_forever's 0.5 s
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01},
                              daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_bearer_token_flow_with_podman_credentials(tmp_path: Path, token_registry: str,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    client = Registry(RegistrySpec(f"{token_registry}/farm", tls_verify=False),
                      auth_path=auth_json(tmp_path, token_registry))
    assert client.manifest_digest("base", "present") == DIGEST
    assert client.manifest_digest("base", "absent") is None
    paths = [(m, p.split("?")[0]) for m, p, _ in Handler.seen]
    assert paths == [("HEAD", "/v2/farm/base/manifests/present"), ("GET", "/token"),
                     ("HEAD", "/v2/farm/base/manifests/present"),
                     ("HEAD", "/v2/farm/base/manifests/absent")]  # the token is reused
    assert "scope=repository%3Afarm%2Fbase%3Apull" in Handler.seen[1][1]
    encoded = base64.b64encode(f"ci:{SECRET}".encode()).decode()
    assert SECRET not in caplog.text and encoded not in caplog.text


def test_without_credentials_access_denied_is_one_clear_error(tmp_path: Path,
                                                              token_registry: str) -> None:
    client = Registry(RegistrySpec(token_registry, tls_verify=False),
                      auth_path=tmp_path / "none.json")
    with pytest.raises(RegistryError) as info:
        client.manifest_digest("base", "present")
    assert "denied access" in str(info.value) and "podman login" in str(info.value)
    wrong = Registry(RegistrySpec(token_registry, tls_verify=False),
                     auth_path=auth_json(tmp_path, token_registry, password="wrong"))
    with pytest.raises(RegistryError) as info:
        wrong.manifest_digest("base", "present")
    assert "wrong" not in str(info.value) and SECRET not in str(info.value)


# -- a registry that is down -----------------------------------------------------------------

def test_silent_registry_times_out_once_and_says_unreachable() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)  # accepts connections into the backlog, never answers
        host = f"127.0.0.1:{listener.getsockname()[1]}"
        client = Registry(RegistrySpec(host, tls_verify=False), timeout=0.5)
        started = time.monotonic()
        with pytest.raises(RegistryUnreachable) as info:
            client.manifest_digest("base", "cpb-0123")
        assert time.monotonic() - started < 3
        assert str(info.value).startswith(f"registry unreachable: {host} (no answer within 0.5 s)")
        # later questions in the same run fail at once instead of waiting again
        started = time.monotonic()
        with pytest.raises(RegistryUnreachable):
            client.prefetch([("a", "t"), ("b", "t"), ("c", "t")])
        assert time.monotonic() - started < 0.2


def test_refused_connection_is_unreachable_at_once() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = Registry(RegistrySpec(f"127.0.0.1:{port}", tls_verify=False))
    started = time.monotonic()
    with pytest.raises(RegistryUnreachable, match="registry unreachable: 127.0.0.1"):
        client.check()
    assert time.monotonic() - started < 2


# -- no registry: not one question --------------------------------------------------------

def test_plan_without_a_registry_asks_no_registry(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from cpb import project as project_module
    from cpb.tasks.plan import make_plan

    def no_network(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a registry was asked")

    monkeypatch.setattr("urllib.request.urlopen", no_network)
    monkeypatch.setattr("cpb.adapters.registry.Registry", no_network)
    # empty local storage; nothing else may run
    runner = FakeRunner().on("podman", "images", returns="[]").on("buildah", "images", returns="[]")
    proj = project_module.open_project(spec_file(tmp_path), runner=runner)
    planned = make_plan(proj)
    assert [p.task for p in planned if p.pending] == ["rootfs:base", "render:base", "build:base",
                                                      "tag:base"]
    assert "in registry" not in str([p.reasons for p in planned])
    assert len(runner.calls) == 1 and runner.calls[0][1] == "images"  # one listing


def test_push_without_a_registry_is_a_spec_error(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from cpb.cli.app import main

    spec = spec_file(tmp_path)
    for argv in (["push"], ["build", "--push"], ["plan", "--push"]):
        assert main(["-f", str(spec), *argv]) == 2
        err = capsys.readouterr().err
        assert err == ("cpb: error: no 'registry:' in cpb.yaml; add one to push "
                       "(registry: {url: HOST[:PORT][/PATH]})\n"), argv
    assert main(["-f", str(spec), "build", "bsae"]) == 2
    assert "no image 'bsae' in cpb.yaml (did you mean 'base'?)" in capsys.readouterr().err
