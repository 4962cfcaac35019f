"""Whom the registry client trusts: certs.d and registries.conf, as podman reads them (issue 17).

The lookups run on real files: HOME points at the test's folder (so
`~/.config/containers/certs.d` is the test's), and registries.conf comes
through CONTAINERS_REGISTRIES_CONF. The TLS cases use a real HTTPS server on
loopback with a CA made for the test.
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from cpb.adapters.registry import Registry, RegistryUnreachable
from cpb.adapters.trust import (
    TrustConfigError,
    cert_dir,
    find_registry,
    registries_conf_files,
    registry_entries,
    tls_files,
)
from cpb.spec.model import RegistrySpec
from tlscerts import Pki, make_pki

DIGEST = "sha256:" + "ef" * 32


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("CONTAINERS_REGISTRIES_CONF", str(tmp_path / "registries.conf"))
    return home


# -- certs.d ---------------------------------------------------------------------------

def test_the_first_existing_certs_d_folder_wins_in_podmans_order(tmp_path: Path) -> None:
    roots = tuple(tmp_path / name for name in ("user", "etc-containers", "etc-docker"))
    assert cert_dir("reg:5000", roots) is None
    (roots[2] / "reg:5000").mkdir(parents=True)
    assert cert_dir("reg:5000", roots) == roots[2] / "reg:5000"
    (roots[1] / "reg:5000").mkdir(parents=True)
    assert cert_dir("reg:5000", roots) == roots[1] / "reg:5000"
    (roots[0] / "reg:5000").mkdir(parents=True)
    assert cert_dir("reg:5000", roots) == roots[0] / "reg:5000"
    assert cert_dir("reg", roots) is None  # the port is part of the name


def test_certs_d_files_cas_and_a_client_pair(tmp_path: Path) -> None:
    folder = tmp_path / "reg:5000"
    folder.mkdir()
    for name in ("ca.crt", "b.crt", "client.cert", "client.key", "notes.txt"):
        (folder / name).write_text("x")
    files = tls_files("reg:5000", (tmp_path,))
    assert files.folder == folder
    assert files.cas == (folder / "b.crt", folder / "ca.crt")
    assert files.client == (folder / "client.cert", folder / "client.key")


@pytest.mark.parametrize(("name", "message"), [
    ("c.cert", "missing key {f}/c.key for client certificate {f}/c.cert (CA certificates "
               "use the extension .crt)"),
    ("c.key", "missing client certificate {f}/c.cert for key {f}/c.key"),
])
def test_a_lone_cert_or_key_is_refused_like_podman(tmp_path: Path, name: str,
                                                   message: str) -> None:
    folder = tmp_path / "reg"
    folder.mkdir()
    (folder / name).write_text("x")
    with pytest.raises(TrustConfigError) as info:
        tls_files("reg", (tmp_path,))
    assert str(info.value) == message.format(f=folder)
    assert info.value.exit_code == 3


def test_the_users_certs_d_is_under_home(home: Path) -> None:
    folder = home / ".config/containers/certs.d/reg.example:443"
    folder.mkdir(parents=True)
    assert tls_files("reg.example:443").folder == folder


# -- registries.conf -------------------------------------------------------------------------

def test_registries_conf_insecure_longest_prefix_wins(home: Path, tmp_path: Path) -> None:
    (tmp_path / "registries.conf").write_text(
        'unqualified-search-registries = ["docker.io"]\n'
        '[[registry]]\nlocation = "reg.example:5000"\ninsecure = true\n'
        '[[registry]]\nprefix = "reg.example:5000/secure"\nlocation = "reg.example:5000"\n'
        '[[registry]]\nlocation = "*.corp.example"\ninsecure = true\n')
    assert registries_conf_files()[0] == tmp_path / "registries.conf"
    entries = registry_entries()
    assert find_registry("reg.example:5000/farm/base", entries).insecure  # type: ignore[union-attr]
    assert not find_registry("reg.example:5000/secure/x", entries).insecure  # type: ignore[union-attr]
    assert find_registry("reg.example:50001/farm", entries) is None  # not a prefix at ':'
    assert find_registry("a.corp.example/farm", entries).insecure  # type: ignore[union-attr]
    assert find_registry("corp.example/farm", entries) is None


def test_registries_conf_v1_insecure_list_and_drop_ins(home: Path, tmp_path: Path) -> None:
    (tmp_path / "registries.conf").write_text(
        '[registries.insecure]\nregistries = ["old.example"]\n')
    drop_ins = home / ".config/containers/registries.conf.d"
    drop_ins.mkdir(parents=True)
    (drop_ins / "50-secure.conf").write_text(
        '[[registry]]\nlocation = "old.example"\ninsecure = false\n')
    (drop_ins / "60-other.conf").write_text(
        '[[registry]]\nlocation = "other.example"\ninsecure = true\n')
    entries = registry_entries()
    assert not find_registry("old.example/x", entries).insecure  # type: ignore[union-attr]
    assert find_registry("other.example/x", entries).insecure  # type: ignore[union-attr]


def test_a_broken_registries_conf_is_one_line(home: Path, tmp_path: Path) -> None:
    (tmp_path / "registries.conf").write_text("[[registry]\nlocation = 1\n")
    with pytest.raises(TrustConfigError) as info:
        registry_entries()
    assert str(info.value).startswith(f"cannot read {tmp_path / 'registries.conf'}: ")
    assert "\n" not in str(info.value)


def test_an_insecure_entry_turns_verification_off_for_podman_and_skopeo(
        home: Path, tmp_path: Path) -> None:
    (tmp_path / "registries.conf").write_text(
        '[[registry]]\nlocation = "reg.example:5000"\ninsecure = true\n')
    assert not Registry(RegistrySpec("reg.example:5000/farm")).verify
    assert Registry(RegistrySpec("reg.example:5001/farm")).verify
    assert not Registry(RegistrySpec("reg.example:5001/farm", tls_verify=False)).verify


def test_the_push_commands_get_the_effective_tls_verify(home: Path, tmp_path: Path) -> None:
    from cpb.adapters.transfer import tls_verify_flag

    (tmp_path / "registries.conf").write_text(
        '[[registry]]\nlocation = "reg.example:5000"\ninsecure = true\n')
    assert tls_verify_flag(Registry(RegistrySpec("reg.example:5000"))) == "false"
    assert tls_verify_flag(Registry(RegistrySpec("reg.example:6000"))) == "true"
    assert tls_verify_flag(Registry(RegistrySpec("reg.example:6000", tls_verify=False))) == "false"


# -- TLS against a real HTTPS server ------------------------------------------------------------

class Handler(BaseHTTPRequestHandler):
    timeout = 5

    def log_message(self, *args: Any) -> None:
        pass

    def do_HEAD(self) -> None:  # noqa: N802
        self.send_response(200)
        self.send_header("Docker-Content-Digest", DIGEST)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_HEAD  # noqa: N815


def _server(context: ssl.SSLContext | None) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    if context is not None:
        server.socket = context.wrap_socket(server.socket, server_side=True)
    # a short poll: shutdown() returns at once instead of after serve_forever's 0.5 s
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01},
                     daemon=True).start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path / "pki")


@pytest.fixture
def https_host(pki: Pki) -> Iterator[str]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.server_cert, pki.server_key)
    yield from _server(context)


@pytest.fixture
def mtls_host(pki: Pki) -> Iterator[str]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.server_cert, pki.server_key)
    context.load_verify_locations(pki.ca)
    context.verify_mode = ssl.CERT_REQUIRED
    yield from _server(context)


@pytest.fixture
def http_host() -> Iterator[str]:
    yield from _server(None)


def _certs_d(home: Path, host: str) -> Path:
    folder = home / ".config/containers/certs.d" / host
    folder.mkdir(parents=True)
    return folder


def test_unknown_ca_names_the_certs_d_folder_and_not_tls_verify(home: Path,
                                                                https_host: str) -> None:
    client = Registry(RegistrySpec(https_host), timeout=5)
    with pytest.raises(RegistryUnreachable) as info:
        client.manifest_digest("base", "t")
    message = str(info.value)
    assert message.startswith(f"registry {https_host}: its TLS certificate is not trusted here "
                              "(unable to get local issuer certificate); put the CA certificate"
                              " that signed it in ")
    assert f"certs.d/{https_host}/ca.crt, where podman and skopeo look too" in message
    assert "tls_verify" not in message and info.value.kind == "certificate"


def test_a_ca_in_the_users_certs_d_is_trusted(home: Path, https_host: str, pki: Pki) -> None:
    (_certs_d(home, https_host) / "ca.crt").write_bytes(pki.ca.read_bytes())
    assert Registry(RegistrySpec(https_host), timeout=5).manifest_digest("b", "t") == DIGEST


def test_the_wrong_ca_in_certs_d_says_which_files_were_tried(home: Path, https_host: str,
                                                             pki: Pki) -> None:
    folder = _certs_d(home, https_host)
    (folder / "corp.crt").write_bytes(pki.other_ca.read_bytes())
    with pytest.raises(RegistryUnreachable) as info:
        Registry(RegistrySpec(https_host), timeout=5).manifest_digest("b", "t")
    assert f"the CA certificates in {folder} (corp.crt) did not sign it" in str(info.value)
    assert "tls_verify" not in str(info.value)


def test_a_plain_http_registry_is_told_apart_and_only_then_tls_verify_is_suggested(
        home: Path, http_host: str) -> None:
    with pytest.raises(RegistryUnreachable) as info:
        Registry(RegistrySpec(http_host), timeout=5).manifest_digest("b", "t")
    assert str(info.value).startswith(f"registry {http_host} answers in plain HTTP, not HTTPS")
    assert "set `registry: {tls_verify: false}` in cpb.yaml" in str(info.value)
    assert info.value.kind == "plain-http"
    # and once marked so, it is used over plain HTTP like podman does
    assert Registry(RegistrySpec(http_host, tls_verify=False),
                    timeout=5).manifest_digest("b", "t") == DIGEST


def test_insecure_means_https_without_verification_first(home: Path, https_host: str,
                                                         tmp_path: Path) -> None:
    (tmp_path / "registries.conf").write_text(
        f'[[registry]]\nlocation = "{https_host}"\ninsecure = true\n')
    client = Registry(RegistrySpec(https_host), timeout=5)
    assert client.manifest_digest("b", "t") == DIGEST
    assert client.base == f"https://{https_host}/v2/"


def test_mutual_tls_with_the_client_certificate_in_certs_d(home: Path, mtls_host: str,
                                                           pki: Pki) -> None:
    """Python's server sometimes hangs up before its alert arrives (docker-registry
    always sends one: see tests/integration/test_registry_tls.py); either way the
    message points at certs.d."""
    folder = _certs_d(home, mtls_host)
    (folder / "ca.crt").write_bytes(pki.ca.read_bytes())
    with pytest.raises(RegistryUnreachable) as info:
        Registry(RegistrySpec(mtls_host), timeout=5).manifest_digest("b", "t")
    message = str(info.value)
    assert message.startswith((
        f"registry {mtls_host} requires a client certificate (mutual TLS) and none was found",
        f"registry {mtls_host}: TLS failed (")), message
    assert "client certificate (mutual TLS)" in message
    assert f"put NAME.cert and NAME.key in {folder}/" in message
    assert "tls_verify" not in str(info.value)
    (folder / "client.cert").write_bytes(pki.client_cert.read_bytes())
    (folder / "client.key").write_bytes(pki.client_key.read_bytes())
    assert Registry(RegistrySpec(mtls_host), timeout=5).manifest_digest("b", "t") == DIGEST


# -- cpb doctor's registry checks ------------------------------------------------------------

def _spec(tmp_path: Path, registry: str) -> Any:
    from cpb.spec.model import load_spec
    from helpers import build_file_tree

    build_file_tree(tmp_path / "proj", {
        "cpb.yaml": f"project: p\n{registry}images:\n  base:\n    from: 'x:1'\n"})
    return load_spec(tmp_path / "proj/cpb.yaml")


def test_doctor_registry_checks_of_a_plain_http_registry(home: Path, http_host: str,
                                                         tmp_path: Path) -> None:
    from cpb.cli.doctor_registry import registry_checks

    spec = _spec(tmp_path, f"registry: {{url: '{http_host}/farm', tls_verify: false}}\n")
    checks = {c.name: c for c in registry_checks(spec)}
    assert checks["registry reachable"].ok
    tls = checks["registry TLS"]
    assert (tls.ok, tls.required, tls.detail) == (
        False, False, "plain HTTP (tls_verify: false in cpb.yaml)")
    assert checks["registry credentials"].ok
    assert checks["registry credentials"].detail.startswith("not needed to read")
    assert not checks["registry push permission"].required


def test_doctor_registry_checks_of_an_untrusted_and_of_no_registry(home: Path, https_host: str,
                                                                   tmp_path: Path) -> None:
    from cpb.cli.doctor_registry import registry_checks

    checks = registry_checks(_spec(tmp_path, f"registry: {{url: '{https_host}'}}\n"))
    assert [(c.name, c.ok) for c in checks] == [("registry reachable", True),
                                                ("registry TLS", False)]
    assert "its TLS certificate is not trusted here" in checks[1].detail and checks[1].required
    none = registry_checks(_spec(tmp_path, ""))
    assert [(c.name, c.ok, c.required) for c in none] == [("registry", False, False)]
