"""examples/wheel-worker: a wheel fetched from PyPI on the host, installed into a venv
in the image (debootstrap + cekit: minutes, and it needs files.pythonhosted.org)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from cpb.cli.app import main
from helpers import image_ids, podman, remove_project_images

pytestmark = [pytest.mark.integration, pytest.mark.slow]
EXAMPLE = Path(__file__).parents[2] / "examples" / "wheel-worker"
WHEEL_SHA256 = "aeb1ff123966c05833d26c7df7e1d54c1c6d32b612428b21677a2e921f1fecae"


def test_example_wheel_worker_imports_nats(tmp_path: Path, project_name: str,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "wheel-worker"
    shutil.copytree(EXAMPLE, root, ignore=shutil.ignore_patterns(".cpb"))
    spec = root / "cpb.yaml"
    spec.write_text(spec.read_text().replace("project: wheel-worker",
                                             f"project: {project_name}"))
    cache = tmp_path / "cache"
    cpb = ["-f", str(spec), "--cache-dir", str(cache)]
    try:
        started = time.monotonic()
        assert main([*cpb, "fetch"]) == 0
        cold = time.monotonic() - started
        assert "1 fetched, 0 already cached" in capsys.readouterr().out
        started = time.monotonic()
        assert main([*cpb, "fetch"]) == 0
        warm = time.monotonic() - started
        assert "0 fetched, 1 already cached" in capsys.readouterr().out
        with capsys.disabled():
            print(f"\nfetch of examples/wheel-worker: cold {cold:.2f} s, warm {warm:.3f} s")
        assert (cache / "sha256" / WHEEL_SHA256).stat().st_size > 50_000

        # Built offline: everything the build needs is in the cache now.
        code = main([*cpb, "--offline", "build"])
        out, err = capsys.readouterr()
        assert code == 0, out + err
        # one image installs its own wheel: no intermediate image holding the artifacts
        names = set(image_ids(project_name))
        assert {"base:12", "worker:1.0"} <= names
        assert {n.split(":")[0] for n in names} == {"base", "worker"}
        image = f"{project_name}/worker:1.0"
        assert podman("run", "--rm", image, "python", "-c", "import nats") == ""
        assert podman("run", "--rm", image) == "nats-py 2.16.0\n"
        assert main([*cpb, "plan", "--exit-code"]) == 0
        assert "nothing to do" in capsys.readouterr().out
    finally:
        remove_project_images(project_name)
