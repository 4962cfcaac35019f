"""Registries over TLS as podman sees them, against a real `docker-registry` (issue 17).

The registry serves HTTPS on loopback with a certificate from a CA made for
the test. That CA is installed only where podman documents it,
`/etc/containers/certs.d/127.0.0.1:PORT/ca.crt` (the tests run as root), and
the folder is removed afterwards: cpb's own client, podman (push) and skopeo
(pull) must all find it there. What was pushed is checked with skopeo.
"""

from __future__ import annotations

import base64
import contextlib
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cpb.adapters.trust import SYSTEM_CERTS_D
from fakes import FakeRunner
from helpers import image_ids, module, remove_project_images
from integration.test_registry_cache import (  # noqa: F401 (a fixture, used by pytest)
    cli,
    local_label,
    private_storage,
    pulled,
    pushed,
    run,
)
from registry_server import RegistryServer
from tlscerts import Pki, make_pki

pytestmark = pytest.mark.integration

SPEC = """
project: "@PROJECT@"
registry:
  url: {url}/farm
{extra}images:
  base:
    rootfs: {{tar: busybox.tar}}
    version: "1"
  other:
    from: base
    modules: [m-other]
"""
FILES = module("m-other", "echo other > /etc/other")
IMAGES = ("base", "other")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def certs_d(request: pytest.FixtureRequest) -> Callable[[str], Path]:
    """certs_d("127.0.0.1:PORT") -> the registry's folder in /etc/containers/certs.d,
    created for the test and removed (with certs.d itself, if it made it and it is
    empty) when the test ends."""
    root = SYSTEM_CERTS_D[0]

    def make(host: str) -> Path:
        made_root = not root.exists()
        folder = root / host
        folder.mkdir(parents=True)

        def remove() -> None:
            shutil.rmtree(folder, ignore_errors=True)
            if made_root:
                # not when someone else's registry folder is in there by now
                with contextlib.suppress(OSError):
                    root.rmdir()

        request.addfinalizer(remove)
        return folder

    return make


@pytest.fixture
def tls_registry(tmp_path: Path, pki: Pki) -> Iterator[RegistryServer]:
    server = RegistryServer(tmp_path / "registry", tls=(pki.server_cert, pki.server_key))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def mtls_registry(tmp_path: Path, pki: Pki) -> Iterator[RegistryServer]:
    server = RegistryServer(tmp_path / "registry", tls=(pki.server_cert, pki.server_key),
                            client_ca=pki.ca)
    server.start()
    yield server
    server.stop()


def project_for(make_project, registry: RegistryServer,  # type: ignore[no-untyped-def]
                extra: str = "") -> Path:
    root: Path = make_project(SPEC.format(url=registry.url, extra=extra), FILES)
    return root


def flags(runner: FakeRunner, program: str) -> set[str]:
    return {arg for c in runner.ran(program) for arg in c
            if "tls-verify" in arg}


def assert_pushed(registry: RegistryServer, project_name: str) -> dict[str, str]:
    """Both tags of each image name one manifest; returns the input digests."""
    digests = {}
    for image in IMAGES:
        version = "1" if image == "base" else "latest"
        digest = local_label(project_name, image, version)
        tags = registry.tags(f"farm/{image}")  # skopeo, trusting certs.d as podman does
        assert f"cpb-{digest[:12]}" in tags and version in tags, tags
        by_digest = registry.inspect(f"farm/{image}", f"cpb-{digest[:12]}")
        assert by_digest["Digest"] == registry.inspect(f"farm/{image}", version)["Digest"]
        digests[image] = digest
    return digests


def test_tls_registry_with_its_ca_in_certs_d_push_digest_tags_and_a_fresh_runner(
        make_project, project_name: str, tls_registry: RegistryServer,  # type: ignore[no-untyped-def]
        certs_d: Callable[[str], Path], pki: Pki, capsys: pytest.CaptureFixture[str]) -> None:
    (certs_d(tls_registry.url) / "ca.crt").write_bytes(pki.ca.read_bytes())
    root = project_for(make_project, tls_registry)

    code, runner = run(root, *(f"push:{i}" for i in IMAGES))
    assert code == 0
    assert runner.started["cekit"] == 2 and len(pushed(runner)) == 2
    assert flags(runner, "podman") == {"--tls-verify=true"}
    built = assert_pushed(tls_registry, project_name)

    # A fresh runner: no .cpb/, no local image; everything is pulled over TLS.
    shutil.rmtree(root / ".cpb")
    remove_project_images(project_name)
    assert image_ids(project_name) == {}
    code, out, err = cli(root, "plan", capsys=capsys)
    assert code == 0, err
    assert "in registry: will pull, not build" in out
    code, runner = run(root, *(f"tag:{i}" for i in IMAGES))
    assert code == 0
    assert runner.started["cekit"] == 0 and len(pulled(runner)) == 2
    assert flags(runner, "skopeo") == {"--src-tls-verify=true"}
    for image, digest in built.items():
        assert local_label(project_name, image, "1" if image == "base" else "latest") == digest
    code, out, _ = cli(root, "plan", "--push", "--exit-code", capsys=capsys)
    assert code == 0, out


def test_unknown_ca_message_names_certs_d_and_does_not_suggest_turning_verification_off(
        make_project, tls_registry: RegistryServer,  # type: ignore[no-untyped-def]
        capsys: pytest.CaptureFixture[str]) -> None:
    root = project_for(make_project, tls_registry)
    code, out, err = cli(root, "plan", capsys=capsys)
    assert code == 3
    folder = SYSTEM_CERTS_D[0] / tls_registry.url
    assert err == (f"cpb: error: registry {tls_registry.url}: its TLS certificate is not "
                   "trusted here (unable to get local issuer certificate); put the CA "
                   f"certificate that signed it in {folder}/ca.crt, where podman and skopeo "
                   "look too; `cpb plan --no-registry-cache` goes on without its cache\n")
    assert "tls_verify" not in out + err and "Traceback" not in out + err

    # cpb doctor tells the same: the registry answers, its certificate is not trusted.
    code, out, err = cli(root, "doctor", capsys=capsys)
    assert code == 3
    assert f"ok  registry reachable: {tls_registry.url} answers\n" in out
    assert (f"!!  registry TLS: registry {tls_registry.url}: its TLS certificate is not trusted "
            f"here (unable to get local issuer certificate); put the CA certificate that "
            f"signed it in {folder}/ca.crt") in out


def test_mutual_tls_with_the_client_certificate_in_certs_d(
        make_project, project_name: str, mtls_registry: RegistryServer,  # type: ignore[no-untyped-def]
        certs_d: Callable[[str], Path], pki: Pki, capsys: pytest.CaptureFixture[str]) -> None:
    folder = certs_d(mtls_registry.url)
    (folder / "ca.crt").write_bytes(pki.ca.read_bytes())
    root = project_for(make_project, mtls_registry)

    # Without the client certificate: one clear line, pointing at certs.d.
    code, out, err = cli(root, "plan", capsys=capsys)
    assert code == 3
    assert err.startswith(f"cpb: error: registry {mtls_registry.url} requires a client "
                          "certificate (mutual TLS) and none was found (")
    assert f"put NAME.cert and NAME.key in {folder}/, where podman looks too" in err
    assert "tls_verify" not in err and "\n" not in err.rstrip("\n")

    shutil.copy(pki.client_cert, folder / "client.cert")
    shutil.copy(pki.client_key, folder / "client.key")
    code, out, err = cli(root, "build", "--push", capsys=capsys)
    assert code == 0, out + err
    assert_pushed(mtls_registry, project_name)
    shutil.rmtree(root / ".cpb")
    remove_project_images(project_name)
    code, runner = run(root, *(f"tag:{i}" for i in IMAGES))
    assert code == 0 and runner.started["cekit"] == 0 and len(pulled(runner)) == 2


def test_a_registry_marked_insecure_in_registries_conf(
        make_project, project_name: str, tmp_path: Path,  # type: ignore[no-untyped-def]
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    server = RegistryServer(tmp_path / "plain-registry")  # plain HTTP
    server.start()
    try:
        root = project_for(make_project, server)  # no tls_verify in cpb.yaml
        conf = tmp_path / "registries.conf"
        conf.write_text('[[registry]]\nlocation = "example.invalid"\n')
        monkeypatch.setenv("CONTAINERS_REGISTRIES_CONF", str(conf))
        code, out, err = cli(root, "plan", capsys=capsys)
        assert code == 3  # not marked: HTTPS is refused, and the message says why
        assert err.startswith(f"cpb: error: registry {server.url} answers in plain HTTP, "
                              "not HTTPS (")
        assert "set `registry: {tls_verify: false}` in cpb.yaml" in err

        conf.write_text(f'[[registry]]\nlocation = "{server.url}"\ninsecure = true\n')
        code, runner = run(root, *(f"push:{i}" for i in IMAGES))
        assert code == 0 and len(pushed(runner)) == 2
        assert flags(runner, "podman") == {"--tls-verify=false"}
        assert_pushed(server, project_name)
        shutil.rmtree(root / ".cpb")
        remove_project_images(project_name)
        code, runner = run(root, *(f"tag:{i}" for i in IMAGES))
        assert code == 0 and runner.started["cekit"] == 0 and len(pulled(runner)) == 2
        assert flags(runner, "skopeo") == {"--src-tls-verify=false"}
    finally:
        server.stop()


def test_doctor_checks_the_registry_and_never_prints_the_credentials(
        make_project, tmp_path: Path, pki: Pki,  # type: ignore[no-untyped-def]
        certs_d: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    password = f"pw-{tmp_path.name}-doctor"
    server = RegistryServer(tmp_path / "auth-registry", users={"ci": password},
                            tls=(pki.server_cert, pki.server_key))
    server.start()
    try:
        ca = certs_d(server.url) / "ca.crt"
        ca.write_bytes(pki.ca.read_bytes())
        root = project_for(make_project, server)
        auth = tmp_path / "auth.json"
        monkeypatch.setenv("REGISTRY_AUTH_FILE", str(auth))

        code, out, err = cli(root, "doctor", capsys=capsys)
        assert code == 3, out + err
        assert f"ok  registry reachable: https://{server.url}/v2/ answered (HTTP 401)\n" in out
        assert f"ok  registry TLS: certificate trusted (the system bundle + {ca})\n" in out
        assert ("!!  registry credentials: the registry asks for them and there are none for "
                f"{server.url}; log in with `podman login {server.url}`\n") in out
        assert ("--  registry push permission: not tested (cpb doctor --registry-write "
                "tests it)\n") in out

        subprocess.run(["podman", "login", "--authfile", str(auth), "--username", "ci",
                        "--password-stdin", server.url],
                       input=password, text=True, check=True, capture_output=True)
        code, out, err = cli(root, "doctor", "--registry-write", capsys=capsys)
        assert f"ok  registry credentials: accepted (from {auth})\n" in out, out
        assert (f"ok  registry push permission: may push to {server.url}/farm/base (an upload "
                "was started and cancelled; nothing was written)\n") in out
        encoded = base64.b64encode(f"ci:{password}".encode()).decode()
        assert password not in out + err and encoded not in out + err
        assert server.tags("farm/base") == []  # skopeo (with the same auth file): nothing there
    finally:
        server.stop()
