"""The README's first command, on a copy of examples/farm (debootstrap + apt: minutes)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cpb.cli.app import main
from helpers import image_ids, podman, remove_project_images

pytestmark = [pytest.mark.integration, pytest.mark.slow]
EXAMPLE = Path(__file__).parents[2] / "examples" / "farm"


def test_example_farm_builds_runs_and_then_is_a_no_op(
        tmp_path: Path, project_name: str, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "farm"
    shutil.copytree(EXAMPLE, root, ignore=shutil.ignore_patterns(".cpb"))
    spec = root / "cpb.yaml"
    spec.write_text(spec.read_text().replace("project: image-farm", f"project: {project_name}"))
    try:
        assert main(["-f", str(spec), "build", "-j", "2"]) == 0
        capsys.readouterr()
        assert {"base:12", "nats:2.9", "worker-gcc:1.0"} <= set(image_ids(project_name))
        out = podman("run", "--rm", f"{project_name}/worker-gcc:1.0")
        assert out == "hello from the compile farm\n"
        assert "v2.9" in podman("run", "--rm", f"{project_name}/nats:2.9", "nats-server",
                                "--version")
        assert main(["-f", str(spec), "plan", "--exit-code"]) == 0
        assert "nothing to do: all 10 tasks up to date" in capsys.readouterr().out
        # the same through doit in the project folder: nothing is built or tagged again.
        # (A render may run again when doit imports another install of cpb than the test:
        # a descriptor holds the path of cpb's built-in modules; no digest changes.)
        done = subprocess.run([sys.executable, "-m", "doit"], cwd=root, text=True,
                              capture_output=True, check=True)
        ran = [line.split()[1] for line in done.stdout.splitlines()
               if line.startswith("  ok ")]
        assert [task for task in ran if not task.startswith("render:")] == [], done.stdout
        assert done.stdout.rstrip().endswith(f"{len(ran)} done, {11 - len(ran)} up to date")
    finally:
        remove_project_images(project_name)


def test_doctor_passes_on_a_machine_set_up_by_ci_setup(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "ok  containers start: the runtime starts containers" in out
