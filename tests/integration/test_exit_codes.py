"""The README's exit-code table, row by row, through the real `cpb` in a subprocess.

Every code in the table has at least one case here; a code added to the table
without a case fails `test_every_row_of_the_table_has_a_case`.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from helpers import build_file_tree, busybox_rootfs_tar, module
from registry_server import RegistryServer

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
ROW = re.compile(r"^\| (\d+) \|", re.M)


def table_codes() -> set[int]:
    section = (REPO / "README.md").read_text().split("## Exit codes", 1)[1].split("\n## ", 1)[0]
    return {int(code) for code in ROW.findall(section)}


def spec(project: str, *, registry: str = "", extra_image: str = "") -> str:
    reg = f"registry: {{url: {registry}/t, tls_verify: false}}\n" if registry else ""
    return (f"project: {project}\n{reg}images:\n"
            "  base:\n    rootfs: {tar: busybox.tar}\n" + extra_image)


CHILD = "  child:\n    from: base\n    env: {A: b}\n"


def run(root: Path, *args: str, env: dict[str, str] | None = None,
        timeout: float = 300) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "PYTHONPATH": str(REPO / "src"), **(env or {})}
    return subprocess.run([sys.executable, "-m", "cpb", *args], cwd=root, env=full,
                          capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture
def project(tmp_path: Path) -> Callable[..., Path]:
    made: list[str] = []

    def make(text_for: Callable[[str], str]) -> Path:
        name = f"ec-{os.getpid()}-{len(made)}-{tmp_path.name[-8:].lower()}"
        name = re.sub(r"[^a-z0-9-]", "-", name)
        made.append(name)
        root = build_file_tree(tmp_path / name, {"cpb.yaml": text_for(name)})
        busybox_rootfs_tar(root / "busybox.tar")
        return root

    yield make  # type: ignore[misc]
    for name in made:
        from helpers import remove_project_images
        remove_project_images(name)


@dataclass(frozen=True)
class Case:
    code: int
    what: str


def _closed_port() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


@pytest.fixture
def refusing_registry(tmp_path: Path) -> Iterator[RegistryServer]:
    server = RegistryServer(tmp_path / "registry", {"someone": "secret"})
    server.start()
    yield server
    server.stop()


def test_every_row_of_the_table_has_a_case() -> None:
    assert table_codes() == {0, 1, 2, 3, 130, 143, 129}


# --- 0, 1, 2 -------------------------------------------------------------------------

def test_0_plan(project: Callable[..., Path]) -> None:
    root = project(lambda n: spec(n))
    result = run(root, "plan")
    assert result.returncode == 0, result.stderr


def test_1_pending_with_exit_code(project: Callable[..., Path]) -> None:
    root = project(lambda n: spec(n))
    assert run(root, "plan", "--exit-code").returncode == 1


def test_1_a_task_failed(project: Callable[..., Path]) -> None:
    root = project(lambda n: spec(n, extra_image="  child:\n    from: base\n"
                                                 "    modules: [fail]\n"))
    build_file_tree(root, module("fail", "exit 7"))
    result = run(root, "build")
    assert result.returncode == 1, result.stderr
    assert "FAIL build:child" in result.stdout + result.stderr


def test_2_bad_spec(project: Callable[..., Path]) -> None:
    root = project(lambda n: spec(n) + "  oops:\n    frm: base\n")
    result = run(root, "plan")
    assert result.returncode == 2 and result.stderr.startswith("cpb: error: ")


def test_2_bad_command_line(project: Callable[..., Path]) -> None:
    root = project(lambda n: spec(n))
    assert run(root, "plan", "--no-such-option").returncode == 2


# --- 3: the environment ----------------------------------------------------------------

@pytest.mark.parametrize("command", [["plan"], ["build"], ["push"]])
def test_3_registry_unreachable(project: Callable[..., Path], command: list[str]) -> None:
    root = project(lambda n: spec(n, registry=_closed_port()))
    result = run(root, *command)
    assert result.returncode == 3, result.stderr
    assert "registry unreachable" in result.stderr


def test_3_registry_unreachable_push_with_nothing_to_build(
        project: Callable[..., Path]) -> None:
    root = project(lambda n: spec(n))
    assert run(root, "build").returncode == 0
    text = (root / "cpb.yaml").read_text()
    (root / "cpb.yaml").write_text(text.replace(
        "images:", f"registry: {{url: {_closed_port()}/t, tls_verify: false}}\nimages:"))
    result = run(root, "push", "--no-registry-cache")
    assert result.returncode == 3, result.stdout + result.stderr
    assert "registry unreachable" in result.stderr


def test_3_registry_unreachable_up(project: Callable[..., Path]) -> None:
    root = project(lambda n: spec(n, registry=_closed_port())
                   + "pods:\n  p:\n    containers:\n      - {image: base, args: [sleep, '60']}\n")
    result = run(root, "up", "p")
    assert result.returncode == 3, result.stderr
    assert "--no-registry-cache" in result.stderr


def test_3_registry_refuses_the_login(project: Callable[..., Path],
                                      refusing_registry: RegistryServer) -> None:
    root = project(lambda n: spec(n, registry=refusing_registry.url))
    result = run(root, "plan", "--exit-code", env={"REGISTRY_AUTH_FILE": "/nonexistent"})
    assert result.returncode == 3, result.stderr
    assert "denied access" in result.stderr


def test_3_cekit_missing(project: Callable[..., Path], tmp_path: Path) -> None:
    root = project(lambda n: spec(n, extra_image=CHILD))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("podman", "buildah", "skopeo", "sh", "bash", "env"):
        found = shutil.which(tool)
        if found:
            (bin_dir / tool).symlink_to(found)
    result = run(root, "build", env={"PATH": str(bin_dir)})
    assert result.returncode == 3, result.stdout + result.stderr
    assert "'cekit' is not installed" in result.stderr


def test_3_project_locked(project: Callable[..., Path]) -> None:
    root = project(lambda n: spec(n))
    (root / ".cpb").mkdir()
    with (root / ".cpb" / "lock").open("a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        result = run(root, "clean", timeout=120)
    assert result.returncode == 3, result.stderr


# --- 130, 143, 129: interrupted ------------------------------------------------------------
# Covered with a real build in tests/integration/test_faults.py
# (test_ctrl_c_exits_130_and_leaves_nothing_running, and SIGTERM 143 / SIGHUP 129);
# this test checks those cases are still there, so the table stays covered.

def test_interrupted_rows_are_tested_in_test_faults() -> None:
    text = (Path(__file__).parent / "test_faults.py").read_text()
    assert "code == 130" in text
    assert "(signal.SIGTERM, 143), (signal.SIGHUP, 129)" in text
