"""examples/compile-farm end to end: real debootstrap, cekit, podman, nats-server.

A copy of the example (its own project name and NATS port) is built from a
clean store, started with `cpb up`, and given compile jobs with `cpb submit`,
as the README tells a user to. Slow: the first build makes a Debian root file
system and installs gcc and nats-server with apt (several minutes).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cpb.security.pki import default_folder
from helpers import copy_compile_farm, cpb_ok, podman, remove_project_images, run_cpb

pytestmark = [pytest.mark.integration, pytest.mark.slow]
UNITS = 40


def project_pods(project: str) -> list[str]:
    out = podman("pod", "ps", "--format", "{{.Name}}",
                 "--filter", f"label=io.cpb.project={project}")
    return out.split()


def project_containers(pod: str) -> list[str]:
    out = podman("ps", "-a", "--format", "{{.Names}}", "--filter", f"pod={pod}")
    return out.split()


@pytest.fixture(scope="module")
def farm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """The example, built and running: (project folder, project name)."""
    root, project, _ = copy_compile_farm(tmp_path_factory.mktemp("farm"), "t-farm")
    subprocess.run([sys.executable, str(root / "make-job.py"), str(UNITS), "--broken"],
                   check=True, capture_output=True)
    try:
        cpb_ok(root, "up", "farm")
        yield root, project
    finally:
        run_cpb(root, "down", "farm", "--volumes")
        remove_project_images(project)


def test_the_compile_job_compiles_every_file_on_both_workers(farm: tuple[Path, str]) -> None:
    root, _ = farm
    proc = run_cpb(root, "submit", "farm", str(root / "job.yaml"), "--json")
    assert proc.returncode == 1, proc.stderr  # the broken file fails the job
    outcome = json.loads(proc.stdout)
    by_name = {task["name"]: task for task in outcome["tasks"]}
    assert len(by_name) == UNITS + 1
    broken = by_name.pop("broken.o")
    assert broken["state"] == "failed" and broken["exit_code"] == 1
    assert "error" in broken["stderr_tail"] and "broken.c" in broken["stderr_tail"]
    assert all(task["state"] == "succeeded" and task["exit_code"] == 0
               for task in by_name.values()), [t for t in by_name.values()
                                               if t["state"] != "succeeded"]
    assert {task["worker"] for task in by_name.values()} == {"gcc-1", "gcc-2"}
    for index in range(UNITS):
        obj = root / "work" / "obj" / f"unit_{index}.o"
        symbols = subprocess.run(["nm", str(obj)], capture_output=True, text=True, check=True)
        assert re.search(rf"\bT function_{index}\b", symbols.stdout), symbols.stdout
    # Without --json: a summary naming the failed task with gcc's message.
    proc = run_cpb(root, "submit", "farm", str(root / "job.yaml"))
    assert proc.returncode == 1
    assert "FAILED broken.o (exit code 1" in proc.stdout and "broken.c" in proc.stdout
    assert f"{UNITS} succeeded, 1 failed" in proc.stdout
    assert "WARNING" not in proc.stderr, proc.stderr  # e.g. asyncio's TLS noise


def test_status_shows_each_worker_and_its_kind(farm: tuple[Path, str]) -> None:
    root, _ = farm
    out = cpb_ok(root, "status").stdout
    assert re.search(r"gcc-1 .*worker, kind gcc", out), out
    assert re.search(r"gcc-2 .*worker, kind gcc", out), out


def test_a_worker_killed_mid_job_loses_no_task(farm: tuple[Path, str]) -> None:
    root, project = farm
    tasks = [f"  - {{name: nap-{i}, argv: [sleep, '3']}}" for i in range(12)]
    (root / "naps.yaml").write_text("kind: gcc\ntimeout: 60\ntasks:\n" + "\n".join(tasks) + "\n")
    pod = f"{project}-farm"
    killed: list[str] = []

    def kill_soon() -> None:
        time.sleep(4)  # both workers hold tasks by now
        podman("kill", f"{pod}-gcc-1")
        killed.append("gcc-1")

    killer = threading.Thread(target=kill_soon)
    killer.start()
    proc = run_cpb(root, "submit", "farm", str(root / "naps.yaml"), "--json", timeout=300)
    killer.join()
    assert killed and proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout)["tasks"]
    assert sorted(r["name"] for r in results) == sorted(f"nap-{i}" for i in range(12))
    assert all(r["state"] == "succeeded" for r in results)
    # the tasks gcc-1 held when it died were delivered again
    assert any(r["attempts"] >= 2 for r in results), results


def test_down_leaves_nothing(farm: tuple[Path, str]) -> None:
    root, project = farm
    assert project_pods(project) == [f"{project}-farm"]
    # the pod's copies of its TLS files (docs/security.md) go with it
    copies = default_folder(root) / "pods" / f"{project}-farm"
    assert sorted(p.name for p in copies.iterdir()) == ["gcc", "majordomo", "nats"]
    cpb_ok(root, "down", "farm")
    assert project_pods(project) == []
    assert project_containers(f"{project}-farm") == []
    assert not copies.exists() and default_folder(root).is_dir()
