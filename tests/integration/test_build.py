"""Real builds with cekit and podman on a busybox base (issue: core)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cpb.adapters.runner import ProcessRunner, Runner
from cpb.cli.app import main
from cpb.project import open_project
from cpb.tasks.doitapp import run_doit
from helpers import image_ids, module, podman

pytestmark = pytest.mark.integration

# base (rootfs) <- mid <- leaf1, leaf2 ; base <- other
SPEC = """
project: "@PROJECT@"
images:
  base:
    rootfs: {tar: busybox.tar}
    version: "1"
  mid:
    from: base
    version: "1"
    modules: [m-mid]
    env: {LEVEL: mid}
  leaf1:
    from: mid
    modules: [m-leaf]
    cmd: [/bin/cat, /etc/leaf]
  leaf2:
    from: mid
    modules: [m-leaf]
  other:
    from: base
    modules: [m-other]
"""


FILES = {
    **module("m-mid", "echo mid > /etc/mid"),
    **module("m-leaf", "cat /etc/mid > /etc/leaf; echo leaf >> /etc/leaf"),
    **module("m-other", "echo other > /etc/other"),
}


def build(root: Path, *args: str) -> tuple[int, Runner]:
    """Build in-process, counting the external programs started."""
    runner = ProcessRunner()
    project = open_project(root / "cpb.yaml", runner=runner)
    code = run_doit(project, list(args))
    return code, runner


def cli(root: Path, *argv: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["-f", str(root / "cpb.yaml"), *argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def built(make_project, project_name: str) -> Path:  # type: ignore[no-untyped-def]
    root: Path = make_project(SPEC, FILES)
    code, runner = build(root)
    assert code == 0
    assert runner.started["cekit"] == 5
    return root


def test_fresh_build_tags_and_labels(built: Path, project_name: str) -> None:
    ids = image_ids(project_name)
    for image in ("base", "mid", "leaf1", "leaf2", "other"):
        version = "1" if image in ("base", "mid") else "latest"
        assert f"{image}:{version}" in ids
        digest_tags = [t for t in ids if t.startswith(f"{image}:cpb-")]
        assert len(digest_tags) == 1 and ids[digest_tags[0]] == ids[f"{image}:{version}"]
        labels = json.loads(podman("image", "inspect", "--format", "{{json .Labels}}",
                                   f"{project_name}/{image}:{version}"))
        assert labels["io.cpb.digest"].startswith(digest_tags[0].split("cpb-")[1])
        assert labels["io.cekit.version"]
    out = podman("run", "--rm", f"{project_name}/leaf1:latest")
    assert out == "mid\nleaf\n"


def test_second_run_runs_nothing(built: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, runner = build(built)
    assert code == 0
    # one listing of local storage (buildah) for the whole project, nothing else:
    # cpb built these images itself, so their labels need not be read again
    assert dict(runner.started) == {"buildah": 1}
    code, out, _ = cli(built, "plan", capsys=capsys)
    assert code == 0 and "nothing to do: all 16 tasks up to date" in out
    code, out, _ = cli(built, "plan", "--exit-code", capsys=capsys)
    assert code == 0
    code, out, _ = cli(built, "plan", "--json", "--all", capsys=capsys)
    plan = json.loads(out)
    assert (plan["pending"], plan["total"], len(plan["tasks"])) == (0, 16, 16)
    assert plan["tasks"][0] == {"task": "rootfs:base", "kind": "rootfs", "image": "base",
                                "pending": False, "reasons": [], "needs": []}


def test_clean_with_images_forgets_everything(built: Path, project_name: str,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(built, "clean", "--images", capsys=capsys)
    assert code == 0 and "removed 11 image tag(s)" in out
    assert image_ids(project_name) == {}
    assert [p.name for p in (built / ".cpb").iterdir()] == ["lock"]
    code, out, _ = cli(built, "plan", "--json", capsys=capsys)
    assert json.loads(out)["pending"] == 16


def test_mid_module_change_rebuilds_exactly_its_subtree(
        built: Path, project_name: str, capsys: pytest.CaptureFixture[str]) -> None:
    before = image_ids(project_name)
    script = built / "modules/m-mid/install.sh"
    script.write_text(script.read_text() + "echo changed >> /etc/mid\n")

    code, out, _ = cli(built, "plan", "--exit-code", capsys=capsys)
    assert code == 1
    assert "build:mid\n    - module file modules/m-mid/install.sh changed\n" in out
    assert "build:leaf1\n    - parent image mid will be rebuilt\n" in out
    assert "build:other" not in out and "build:base" not in out

    code, runner = build(built)
    assert code == 0
    assert runner.started["cekit"] == 3
    after = image_ids(project_name)
    for image in ("mid:1", "leaf1:latest", "leaf2:latest"):
        assert after[image] != before[image], image
    for image in ("base:1", "other:latest"):
        assert after[image] == before[image], image
    assert podman("run", "--rm", f"{project_name}/leaf1:latest") == "mid\nchanged\nleaf\n"


def test_unrelated_change_leaves_the_others_alone(built: Path, project_name: str) -> None:
    before = image_ids(project_name)
    (built / "modules/m-other/install.sh").write_text("#!/bin/sh\necho other2 > /etc/other\n")
    code, runner = build(built)
    assert code == 0 and runner.started["cekit"] == 1
    after = image_ids(project_name)
    changed = {tag.split(":")[0] for tag in before if before[tag] != after.get(tag)}
    assert changed == {"other"}


def test_removed_image_is_rebuilt(built: Path, project_name: str,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    podman("rmi", f"{project_name}/leaf2:latest", *[
        f"{project_name}/{t}" for t in image_ids(project_name) if t.startswith("leaf2:cpb-")])
    code, out, _ = cli(built, "plan", capsys=capsys)
    assert "build:leaf2\n    - image missing from local storage" in out
    assert out.count("build:") == 1
    code, runner = build(built)
    assert code == 0 and runner.started["cekit"] == 1
    assert "leaf2:latest" in image_ids(project_name)


def test_failing_module_stops_dependents_only(make_project, project_name: str,  # type: ignore[no-untyped-def]
                                              capsys: pytest.CaptureFixture[str]) -> None:
    files = {**FILES, **module("m-mid", "echo about to fail; exit 3")}
    root = make_project(SPEC, files)
    code, out, err = cli(root, "build", "-j", "2", capsys=capsys)
    assert code == 1
    log = root / ".cpb/logs/build-mid.log"
    assert f"FAIL build:mid: cekit exited with 1; log: {log}\n" in out
    assert "about to fail" in log.read_text()
    assert "FAIL build:leaf1: not run: a task it needs failed" in out
    built = set(image_ids(project_name))
    assert {"base:1", "other:latest"} <= built
    assert not any(t.startswith(("mid:", "leaf1:", "leaf2:")) for t in built)
    assert "1 failed: build:mid; 5 not run because of it" in out


def test_doit_in_the_project_does_what_cpb_build_does(make_project, project_name: str) -> None:  # type: ignore[no-untyped-def]
    root = make_project(SPEC, {**FILES, "dodo.py": "from cpb.dodo import *  # noqa: F403\n"})
    env = {**os.environ}
    doit = [sys.executable, "-m", "doit"]
    listed = subprocess.run([*doit, "list", "--status"], cwd=root, env=env, text=True,
                            capture_output=True, check=True).stdout
    assert "R build:leaf1" in listed and "R rootfs:base" in listed
    subprocess.run([*doit, "-n", "2"], cwd=root, env=env, check=True, capture_output=True)
    assert {"leaf1:latest", "other:latest"} <= set(image_ids(project_name))
    listed = subprocess.run([*doit, "list", "--status"], cwd=root, env=env, text=True,
                            capture_output=True, check=True).stdout
    # the graph's 16 tasks, and the group tasks `images` (the default) and `up`
    assert "R " not in listed and listed.count("U ") == 16 + 2
    code, runner = build(root)
    assert code == 0 and runner.started["cekit"] == 0


def test_spec_errors_exit_2_without_traceback(make_project,  # type: ignore[no-untyped-def]
                                              capsys: pytest.CaptureFixture[str]) -> None:
    root = make_project(SPEC.replace("  leaf2:\n    from: mid", "  leaf2:\n    from: mid\n"
                                     "    modlues: [m-leaf]"), FILES)
    code, out, err = cli(root, "build", capsys=capsys)
    assert code == 2
    assert err == ("cpb: error: cpb.yaml:17:5: images.leaf2.modlues: unknown key 'modlues' "
                   "(did you mean 'modules'?)\n")
    (root / "cpb.yaml").write_text(SPEC.replace("@PROJECT@", "cycle").replace(
        "    rootfs: {tar: busybox.tar}", "    from: other"))
    code, out, err = cli(root, "plan", capsys=capsys)
    assert code == 2
    assert err.startswith("cpb: error: cpb.yaml:")
    assert "images built from each other form a cycle: base -> other -> base" in err
    assert "Traceback" not in out + err
    assert not (root / ".cpb").exists()
