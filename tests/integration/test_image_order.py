"""What users write naturally works (issue 12), with the real cekit and podman.

An image's own packages, then its artifacts, then its modules, each a layer:
its modules see its artifacts, and a module change reuses podman's cached
package and artifact layers. Busybox has no package manager, so the base
here carries a stand-in `apk` (a manager cekit knows) that "installs" a
package by writing a file holding a random id: an install that ran again
writes another id, one taken from the cache keeps it.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from cpb.cli.app import main
from helpers import module, podman
from httpserver import FileServer, file_server

pytestmark = pytest.mark.integration

FAKE_APK = """#!/bin/sh
# a package manager stand-in: `apk add P...` writes /var/lib/fake-apk/P with a fresh id
case "$1" in
  add) shift; mkdir -p /var/lib/fake-apk
       for p in "$@"; do cat /proc/sys/kernel/random/uuid > "/var/lib/fake-apk/$p"; done ;;
  info) shift; for p in "$@"; do case "$p" in -*) continue ;; esac
                                 test -f "/var/lib/fake-apk/$p" || exit 1; done ;;
  *) exit 2 ;;
esac
"""

SPEC = """
project: "@PROJECT@"
images:
  base:
    rootfs: {tar: busybox.tar}
  app:
    from: base
    modules: [install-payload]
    packages_manager: apk
    packages: [tool]
    artifacts: [{name: payload.txt, url: "@URL@", sha256: "@SUM@"}]
    cmd: [/bin/cat, /payload.txt, /var/lib/fake-apk/tool]
"""
FILES = {**module("install-payload", "cp /tmp/artifacts/payload.txt /payload.txt")}


@pytest.fixture
def server() -> Iterator[FileServer]:
    with file_server() as srv:
        srv.files["payload.txt"] = b"the payload\n"
        yield srv


def with_fake_apk(tar_path: Path) -> None:
    """Add the stand-in package manager to the project's busybox root file system."""
    data = FAKE_APK.encode()
    with tarfile.open(tar_path, "a") as tar:
        info = tarfile.TarInfo("usr/bin/apk")
        info.size, info.mode = len(data), 0o755
        tar.addfile(info, io.BytesIO(data))


def layers(ref: str) -> list[str]:
    return list(json.loads(podman("image", "inspect", ref))[0]["RootFS"]["Layers"])


def cpb(root: Path, cache: Path, *args: str) -> int:
    return main(["--cache-dir", str(cache), "-f", str(root / "cpb.yaml"), *args])


def test_modules_see_the_images_artifacts_and_reuse_the_package_layer(
        make_project, project_name: str, server: FileServer, tmp_path: Path,  # type: ignore[no-untyped-def]
        capsys: pytest.CaptureFixture[str]) -> None:
    spec = (SPEC.replace("@URL@", server.url("/files/payload.txt"))
            .replace("@SUM@", hashlib.sha256(b"the payload\n").hexdigest()))
    root: Path = make_project(spec, FILES)
    with_fake_apk(root / "busybox.tar")
    cache = tmp_path / "cache"
    assert cpb(root, cache, "build") == 0, capsys.readouterr()
    ref = f"{project_name}/app:latest"
    first = podman("run", "--rm", ref).splitlines()
    assert first[0] == "the payload"  # the module copied the image's own artifact
    package_id = first[1]
    before = layers(ref)

    script = root / "modules/install-payload/install.sh"
    script.write_text(script.read_text() + "echo changed > /changed\n")
    capsys.readouterr()
    assert cpb(root, cache, "plan") == 0
    assert "module file modules/install-payload/install.sh changed" in capsys.readouterr().out
    assert cpb(root, cache, "build") == 0, capsys.readouterr()
    second = podman("run", "--rm", ref).splitlines()
    assert second == ["the payload", package_id], "the package step ran again"
    after = layers(ref)
    assert after != before
    # the base's layer, the package layer and the artifact layer come from the cache
    assert after[:3] == before[:3]
    log = (root / ".cpb/logs/build-app.log").read_text()
    assert log.count("Using cache") >= 2


def test_a_change_in_a_module_a_module_installs_rebuilds(
        make_project, project_name: str, tmp_path: Path,  # type: ignore[no-untyped-def]
        capsys: pytest.CaptureFixture[str]) -> None:
    spec = """
        project: "@PROJECT@"
        images:
          base:
            rootfs: {tar: busybox.tar}
          app:
            from: base
            modules: [outer]
            cmd: [/bin/cat, /etc/helped]
        """
    files = {**module("outer", "cat /etc/helper > /etc/helped; echo outer >> /etc/helped"),
             **module("helper", "echo helper one > /etc/helper")}
    files["modules/outer/module.yaml"] = (
        'schema_version: 1\nname: outer\nversion: "1.0"\nexecute: [{script: install.sh}]\n'
        "modules:\n  install:\n    - name: helper\n")
    root: Path = make_project(spec, files)
    cache = tmp_path / "cache"
    assert cpb(root, cache, "build") == 0, capsys.readouterr()
    ref = f"{project_name}/app:latest"
    assert podman("run", "--rm", ref) == "helper one\nouter\n"

    (root / "modules/helper/install.sh").write_text("#!/bin/sh\necho helper two > /etc/helper\n")
    capsys.readouterr()
    assert cpb(root, cache, "plan", "--exit-code") == 1
    out = capsys.readouterr().out
    assert "module file modules/helper/install.sh changed" in out
    assert cpb(root, cache, "build") == 0, capsys.readouterr()
    assert podman("run", "--rm", ref) == "helper two\nouter\n"
    capsys.readouterr()
    assert cpb(root, cache, "plan", "--exit-code") == 0
