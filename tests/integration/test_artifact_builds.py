"""url artifacts end to end: loopback HTTP server → cache → cekit → image (issue: artifacts)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from cpb.adapters.artifacts import ArtifactCache
from cpb.adapters.runner import ProcessRunner, Runner
from cpb.cli.app import main
from cpb.project import open_project
from cpb.tasks.doitapp import run_doit
from helpers import image_ids, podman
from httpserver import FileServer, file_server

pytestmark = pytest.mark.integration

SPEC = """
project: "@PROJECT@"
images:
  base:
    rootfs: {tar: busybox.tar}
  data:
    from: base
    artifacts:
      - url: "@URL@"
        sha256: "@SUM@"
        dest: /opt/data/
    cmd: [/bin/cat, /opt/data/payload.txt]
  other:
    from: base
    env: {WHO: other}
"""


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def server() -> Iterator[FileServer]:
    with file_server() as srv:
        srv.files["payload.txt"] = b"first payload\n"
        yield srv


def spec_text(server: FileServer, name: str = "payload.txt") -> str:
    return (SPEC.replace("@URL@", server.url(f"/files/{name}"))
            .replace("@SUM@", sha256(server.files[name])))


def build(root: Path, cache: Path, **options: bool) -> tuple[int, Runner]:
    runner = ProcessRunner()
    project = open_project(root / "cpb.yaml", runner=runner,
                           cache=ArtifactCache(cache, **options))
    return run_doit(project, []), runner


def test_url_artifact_is_fetched_once_and_built_into_the_image(
        make_project, project_name: str, server: FileServer, tmp_path: Path,  # type: ignore[no-untyped-def]
        capsys: pytest.CaptureFixture[str]) -> None:
    root: Path = make_project(spec_text(server))
    cache = tmp_path / "cache"
    code, runner = build(root, cache)
    out = capsys.readouterr().out
    assert code == 0, out
    key = sha256(b"first payload\n")
    assert f"  ok  fetch:{key}" in out
    assert server.hits["/files/payload.txt"] == 1
    assert (cache / "sha256" / key).read_bytes() == b"first payload\n"
    # cekit was handed the cached file, never the url
    # (the image's artifacts are in the module cpb generates for it, beside the descriptor)
    module = (root / ".cpb/render/data/modules/artifacts/module.yaml").read_text()
    assert str(cache / "sha256" / key) in module and "http" not in module
    assert "http" not in (root / ".cpb/render/data/image.yaml").read_text()
    assert podman("run", "--rm", f"{project_name}/data:latest") == "first payload\n"

    code, runner = build(root, cache)
    assert code == 0 and runner.started["cekit"] == 0
    assert server.hits["/files/payload.txt"] == 1

    # A new file behind a new checksum rebuilds exactly the image that uses it.
    before = image_ids(project_name)
    server.files["payload2.txt"] = b"second payload\n"
    (root / "cpb.yaml").write_text(spec_text(server, "payload2.txt").replace(
        "@PROJECT@", project_name).replace("/opt/data/payload.txt", "/opt/data/payload2.txt"))
    code = main(["-f", str(root / "cpb.yaml"), "--cache-dir", str(cache), "plan"])
    out = capsys.readouterr().out
    assert code == 0
    new_key = sha256(b"second payload\n")
    assert f"fetch:{new_key}\n    - artifact payload2.txt (sha256 {new_key[:12]}) is not in " \
           f"the cache {cache}\n" in out
    assert "    - artifact payload2.txt added\n" in out
    assert "build:other" not in out and "build:base" not in out
    code, runner = build(root, cache)
    assert code == 0 and runner.started["cekit"] == 1
    after = image_ids(project_name)
    assert {t.split(":")[0] for t in before if before[t] != after.get(t)} == {"data"}
    assert podman("run", "--rm", f"{project_name}/data:latest") == "second payload\n"


def test_offline_build_names_the_missing_artifacts_and_builds_nothing(
        make_project, project_name: str, server: FileServer, tmp_path: Path,  # type: ignore[no-untyped-def]
        capsys: pytest.CaptureFixture[str]) -> None:
    root: Path = make_project(spec_text(server))
    empty = tmp_path / "empty-cache"
    code = main(["-f", str(root / "cpb.yaml"), "--cache-dir", str(empty), "--offline", "build"])
    out, err = capsys.readouterr()
    assert code == 1
    key = sha256(b"first payload\n")
    assert err == (f"cpb: error: offline, and 1 artifact(s) are not in the cache {empty}: "
                   f"payload.txt (sha256 {key[:12]}) from {server.url('/files/payload.txt')}; "
                   "run `cpb fetch` while online\n")
    assert server.hits["/files/payload.txt"] == 0 and image_ids(project_name) == {}

    code = main(["-f", str(root / "cpb.yaml"), "--cache-dir", str(empty), "fetch"])
    assert code == 0
    capsys.readouterr()
    code = main(["-f", str(root / "cpb.yaml"), "--cache-dir", str(empty), "--offline", "build"])
    out, err = capsys.readouterr()
    assert code == 0, out + err
    assert podman("run", "--rm", f"{project_name}/data:latest") == "first payload\n"
    assert server.hits["/files/payload.txt"] == 1
