"""The registry as push target and shared build cache, against a real registry (issue 4).

`docker-registry` (Debian's build of distribution) runs on loopback, plain
HTTP, storage in the test's tmp_path. What cpb pushed is checked with skopeo,
a client that shares no code with cpb.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cpb.adapters.runner import ProcessRunner
from cpb.cli.app import main
from cpb.project import open_project
from cpb.tasks.doitapp import run_doit
from fakes import FakeRunner
from helpers import image_ids, podman, remove_project_images
from integration.test_build import FILES, SPEC
from registry_server import RegistryServer

pytestmark = pytest.mark.integration
IMAGES = ("base", "leaf1", "leaf2", "mid", "other")


def RecordingRunner() -> FakeRunner:  # noqa: N802 (reads as the runner it is)
    """A real Runner (every command runs) that also remembers every command line."""
    return FakeRunner(passthrough=ProcessRunner())


def pushed(runner: FakeRunner) -> list[str]:
    """Registry references `podman push` sent images to."""
    return sorted(c[-1] for c in runner.ran("podman", "push"))


def pulled(runner: FakeRunner) -> list[str]:
    return sorted(c[-2] for c in runner.ran("skopeo", "copy"))


@pytest.fixture(scope="module", autouse=True)
def private_storage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Local image storage of these tests' own, like a CI runner's.

    The shared storage of this machine is busy with other people's images
    (a `podman images` there can take minutes); a storage of our own also
    makes "every local image is gone" literally true for the fresh runner.
    """
    folder = tmp_path_factory.mktemp("storage")
    conf = folder / "storage.conf"
    conf.write_text(f'[storage]\ndriver = "overlay"\ngraphroot = "{folder}/graph"\n'
                    f'runroot = "{folder}/run"\n')
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CONTAINERS_STORAGE_CONF", str(conf))
        yield folder
        podman("rmi", "--all", "--force")
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[RegistryServer]:
    server = RegistryServer(tmp_path / "registry")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def project(make_project, registry: RegistryServer) -> Path:  # type: ignore[no-untyped-def]
    spec = SPEC.replace("images:\n", f"registry:\n  url: {registry.url}/farm\n"
                                     "  tls_verify: false\nimages:\n", 1)
    root: Path = make_project(spec, FILES)
    return root


def run(root: Path, *targets: str, cache: bool = True) -> tuple[int, FakeRunner]:
    runner = RecordingRunner()
    proj = open_project(root / "cpb.yaml", runner=runner, registry_cache=cache)
    return run_doit(proj, list(targets)), runner


def pushes(*images: str) -> list[str]:
    return [f"push:{i}" for i in images]


def tags(*images: str) -> list[str]:
    """What `cpb build` runs: everything up to the tags, no push."""
    return [f"tag:{i}" for i in images]


def local_label(project_name: str, image: str, tag: str) -> str:
    labels = json.loads(podman("image", "inspect", "--format", "{{json .Labels}}",
                               f"{project_name}/{image}:{tag}"))
    return str(labels["io.cpb.digest"])


def cli(root: Path, *argv: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    capsys.readouterr()  # only this command's output
    code = main(["-f", str(root / "cpb.yaml"), *argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_in_registry(registry: RegistryServer, root: Path, project_name: str,
                       image: str) -> None:
    """The version tag and the digest tag name one manifest carrying the input digest."""
    version = "1" if image in ("base", "mid") else "latest"
    digest = local_label(project_name, image, version)
    tags = registry.tags(f"farm/{image}")
    assert f"cpb-{digest[:12]}" in tags and version in tags, tags
    by_digest = registry.inspect(f"farm/{image}", f"cpb-{digest[:12]}")
    by_version = registry.inspect(f"farm/{image}", version)
    assert by_digest["Labels"]["io.cpb.digest"] == digest
    assert by_version["Digest"] == by_digest["Digest"]
    # .cpb/ records that manifest: pushed from here, or pulled from there
    push_stamp = root / f".cpb/state/push/{image}.json"
    if push_stamp.exists():
        stamp = json.loads(push_stamp.read_text())
        assert stamp["manifest"] == by_digest["Digest"] and stamp["digest"] == digest
    else:
        stamp = json.loads((root / f".cpb/state/build/{image}.json").read_text())
        assert stamp["pulled"] == f"{registry.url}/farm/{image}@{by_digest['Digest']}"


def test_push_then_a_second_push_pushes_nothing(
        project: Path, registry: RegistryServer, project_name: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    code, runner = run(project, *pushes(*IMAGES))
    assert code == 0
    assert runner.started["cekit"] == 5
    assert pushed(runner) == [f"docker://{registry.url}/farm/{i}:cpb-{d[:12]}" for i, d in
                               sorted((i, local_label(project_name, i, "1" if i in ("base", "mid")
                                                      else "latest")) for i in IMAGES)]
    for image in IMAGES:
        assert_in_registry(registry, project, project_name, image)

    code, runner = run(project, *pushes(*IMAGES))
    assert code == 0
    assert pushed(runner) == [] and runner.started["cekit"] == 0
    assert dict(runner.started) == {"buildah": 1}  # the one listing of local storage
    code, out, _ = cli(project, "plan", "--push", "--exit-code", capsys=capsys)
    assert code == 0 and "nothing to do: all 21 tasks up to date" in out
    code, out, _ = cli(project, "push", capsys=capsys)
    assert code == 0 and "0 done, 21 up to date" in out


def test_fresh_runner_pulls_everything_then_builds_only_a_changed_subtree(
        project: Path, registry: RegistryServer, project_name: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    started = time.monotonic()
    code, runner = run(project, *tags(*IMAGES))
    full_build = time.monotonic() - started
    assert code == 0 and runner.started["cekit"] == 5
    started = time.monotonic()
    code, runner = run(project, *pushes(*IMAGES))
    first_push = time.monotonic() - started
    assert code == 0 and len(pushed(runner)) == 5
    built = {i: local_label(project_name, i, "1" if i in ("base", "mid") else "latest")
             for i in IMAGES}

    # A fresh CI runner: no .cpb/, no local image of the project.
    shutil.rmtree(project / ".cpb")
    remove_project_images(project_name)
    assert image_ids(project_name) == {}

    code, out, _ = cli(project, "plan", capsys=capsys)
    assert code == 0
    for image in IMAGES:
        assert (f"build:{image}\n    - in registry: will pull, not build "
                f"({registry.url}/farm/{image}:cpb-{built[image][:12]})\n") in out
    assert "rootfs:base" not in out  # its only use is a build that will be pulled
    assert "tag:mid\n    - image mid will be pulled\n" in out
    # `cpb graph` shows the same: builds the registry stands in for are "will pull"
    code, out, _ = cli(project, "graph", "--format", "mermaid", capsys=capsys)
    assert code == 0
    for image in IMAGES:
        assert re.search(rf'\["build:{image}"\]:::pull\n', out), out
    code, out, _ = cli(project, "graph", "--no-registry-cache", "--format", "mermaid",
                       capsys=capsys)
    assert ":::pull" not in out and '["build:mid"]:::pending' in out
    # one image of a registry project: its graph ends in its push
    code, out, _ = cli(project, "graph", "mid", "--format", "mermaid", capsys=capsys)
    assert code == 0 and '["push:mid"]' in out and "leaf1" not in out, out

    started = time.monotonic()
    code, runner = run(project, *tags(*IMAGES))
    fresh_runner = time.monotonic() - started
    assert code == 0
    assert runner.started["cekit"] == 0  # nothing built: everything pulled
    assert len(pulled(runner)) == 5
    for image in IMAGES:
        version = "1" if image in ("base", "mid") else "latest"
        assert local_label(project_name, image, version) == built[image]
    assert podman("run", "--rm", f"{project_name}/leaf1:latest") == "mid\nleaf\n"
    code, out, _ = cli(project, "plan", "--exit-code", capsys=capsys)
    assert code == 0, out
    code, out, _ = cli(project, "plan", "--push", "--exit-code", capsys=capsys)
    assert code == 0, out  # what was pulled is known to be in the registry

    # Pushing from the fresh runner sends nothing: the registry has it all.
    code, runner = run(project, *pushes(*IMAGES))
    assert code == 0 and pushed(runner) == [] and runner.started["cekit"] == 0

    # A changed module builds exactly that image and its dependents, and
    # pushes only those.
    script = project / "modules/m-mid/install.sh"
    script.write_text(script.read_text() + "echo changed >> /etc/mid\n")
    code, out, _ = cli(project, "plan", "--push", capsys=capsys)
    assert "build:mid\n    - module file modules/m-mid/install.sh changed\n" in out
    assert "build:other" not in out and "build:base" not in out
    code, runner = run(project, *pushes(*IMAGES))
    assert code == 0
    assert runner.started["cekit"] == 3 and pulled(runner) == []
    assert [p.split("/")[-1].split(":")[0] for p in pushed(runner)] == ["leaf1", "leaf2", "mid"]
    for image in IMAGES:
        assert_in_registry(registry, project, project_name, image)
    assert local_label(project_name, "mid", "1") != built["mid"]
    assert local_label(project_name, "other", "latest") == built["other"]

    # The closing note of issue 4; shown with `pytest -s`.
    print(f"\nTIMING full build {full_build:.2f} s, first push {first_push:.2f} s, "
          f"fresh runner (all pulled) {fresh_runner:.2f} s")
    assert fresh_runner < full_build


def test_registry_cache_can_be_turned_off(
        project: Path, registry: RegistryServer, project_name: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    code, runner = run(project, *pushes("other"))
    assert code == 0 and runner.started["cekit"] == 2
    remove_project_images(project_name)
    code, out, _ = cli(project, "plan", "--no-registry-cache", "other", capsys=capsys)
    assert "in registry" not in out and "build:other\n    - image missing" in out
    code, runner = run(project, "tag:other", cache=False)
    assert code == 0 and runner.started["cekit"] == 2 and pulled(runner) == []


def test_registry_stopped_mid_run_fails_clearly_and_a_later_run_completes(
        project: Path, registry: RegistryServer, project_name: str,
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    pushed_dir = project / ".cpb/state/push"
    stopped = threading.Event()

    def stop_after_first_push() -> None:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not stopped.is_set():
            if pushed_dir.is_dir() and any(pushed_dir.iterdir()):
                registry.stop()
                stopped.set()
                return
            time.sleep(0.02)

    watcher = threading.Thread(target=stop_after_first_push, daemon=True)
    watcher.start()
    started = time.monotonic()
    code, out, err = cli(project, "build", "--push", capsys=capsys)
    took = time.monotonic() - started
    stopped.set()
    watcher.join()
    assert code == 3  # the environment (README's exit codes): the registry went away
    first = sorted(p.stem for p in pushed_dir.iterdir())
    assert len(first) == 1, first
    assert f"registry unreachable: {registry.url}" in out
    assert "Traceback" not in out + err
    # every image was still built, and is kept
    assert {f"{i}:{'1' if i in ('base', 'mid') else 'latest'}" for i in IMAGES} <= set(
        image_ids(project_name))
    assert took < 300

    registry.start()
    code, runner = run(project, *pushes(*IMAGES))
    assert code == 0
    assert runner.started["cekit"] == 0
    assert sorted(p.split("/")[-1].split(":")[0] for p in pushed(runner)) == sorted(
        set(IMAGES) - set(first))
    for image in IMAGES:
        assert_in_registry(registry, project, project_name, image)


def test_plan_with_the_registry_down_says_so(project: Path, registry: RegistryServer,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    registry.stop()
    started = time.monotonic()
    code, out, err = cli(project, "plan", capsys=capsys)
    assert time.monotonic() - started < 15
    assert code == 3
    assert err.startswith(f"cpb: error: registry unreachable: {registry.url} (")
    assert "Traceback" not in out + err


def test_credentials_come_from_podmans_auth_file_and_are_never_shown(
        make_project, project_name: str, tmp_path: Path,  # type: ignore[no-untyped-def]
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    password = f"pw-{project_name}-secret"
    server = RegistryServer(tmp_path / "auth-registry", users={"ci": password})
    server.start()
    try:
        spec = SPEC.replace("images:\n", f"registry:\n  url: {server.url}/farm\n"
                                         "  tls_verify: false\nimages:\n", 1)
        root: Path = make_project(spec, FILES)
        auth_file = tmp_path / "auth.json"
        monkeypatch.setenv("REGISTRY_AUTH_FILE", str(auth_file))

        # Not logged in: one clear line, no traceback.
        code, out, err = cli(root, "plan", "other", capsys=capsys)
        assert code == 3  # a refused login is the environment, not pending work (exit 1)
        assert err == (f"cpb: error: registry {server.url} denied access while looking up "
                       f"{server.url}/farm/base:cpb-{err.split(':cpb-')[1][:12]} (HTTP 401); "
                       f"log in with `podman login {server.url}` (cpb reads podman's auth file)\n")

        subprocess.run(["podman", "login", "--tls-verify=false", "--authfile", str(auth_file),
                        "--username", "ci", "--password-stdin", server.url],
                       input=password, text=True, check=True, capture_output=True)
        caplog.set_level(logging.DEBUG)
        code, out, err = cli(root, "-v", "build", "--push", "base", "other", capsys=capsys)
        assert code == 0, out + err
        shown = out + err + caplog.text
        code, runner = run(root, *pushes("base", "other"))
        assert code == 0 and pushed(runner) == []

        remove_project_images(project_name)
        shutil.rmtree(root / ".cpb")
        code, out, err = cli(root, "-v", "build", "other", capsys=capsys)
        assert code == 0 and "ok  build:other" in out
        for image in ("base", "other"):  # pulled with the credentials, not built
            stamp = json.loads((root / f".cpb/state/build/{image}.json").read_text())
            assert stamp["pulled"].startswith(f"{server.url}/farm/{image}@sha256:")
        shown += out + err + caplog.text
        assert "other:latest" in image_ids(project_name)
        inspect = subprocess.run(
            ["skopeo", "inspect", "--tls-verify=false", "--creds", f"ci:{password}",
             f"docker://{server.url}/farm/other:latest"],
            capture_output=True, text=True, check=True)
        digest = local_label(project_name, "other", "latest")
        assert json.loads(inspect.stdout)["Labels"]["io.cpb.digest"] == digest
        # The password (or its base64 form) is in no output, log or record.
        encoded = base64.b64encode(f"ci:{password}".encode()).decode()
        records = "".join(p.read_text(errors="replace") for p in (root / ".cpb").rglob("*")
                          if p.is_file())
        for text in (shown, records):
            assert password not in text and encoded not in text
    finally:
        server.stop()
