"""The no-op fast path's pure logic: which command lines it answers, what it records.

The fast path itself, against real storage and real changes, is tested in
tests/integration/test_noop_fast_path.py.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from cpb.cli.fastpath import RECORD, _parse, record
from cpb.project import open_project
from fakes import FakeRunner
from helpers import build_file_tree


@pytest.mark.parametrize(("argv", "parsed"), [
    (["plan"], (None, "plan", False)),
    (["plan", "--exit-code"], (None, "plan", True)),
    (["-f", "x/cpb.yaml", "plan"], (Path("x/cpb.yaml"), "plan", False)),
    (["--file=x.yaml", "build"], (Path("x.yaml"), "build", False)),
    (["build", "-j", "4", "-x"], (None, "build", False)),
    (["build", "-j4", "--keep-going", "--jobs=2"], (None, "build", False)),
])
def test_plain_plan_and_build_are_answered(argv: list[str], parsed: object) -> None:
    assert _parse(argv) == parsed


@pytest.mark.parametrize("argv", [
    [], ["status"], ["plan", "base"], ["plan", "--json"], ["plan", "--all"], ["plan", "--push"],
    ["build", "base"], ["build", "--push"], ["build", "-j"], ["build", "-j", "x"],
    ["-v", "plan"], ["--offline", "build"], ["--cache-dir", "c", "plan"], ["-f"],
    ["build", "--exit-code"], ["plan", "-j", "2"],
])
def test_anything_else_takes_the_full_path(argv: list[str]) -> None:
    assert _parse(argv) is None


FILES = {
    "cpb.yaml": "project: p\nimages:\n  base: {rootfs: {tar: base.tar}, modules: [m1]}\n",
    "base.tar": "x",
    "modules/m1/module.yaml": "name: m1\nversion: \"1\"\n",
    "modules/m1/sub/install.sh": "echo 1\n",
}


def test_a_fresh_checkout_gets_no_record(tmp_path: Path) -> None:
    root = build_file_tree(tmp_path, FILES)
    project = open_project(root / "cpb.yaml", runner=FakeRunner())
    assert record(project, time.time_ns(), 4) is False
    assert not (root / ".cpb").exists()


def test_the_record_names_every_input(tmp_path: Path) -> None:
    root = build_file_tree(tmp_path, FILES)
    (root / ".cpb").mkdir()
    project = open_project(root / "cpb.yaml", runner=FakeRunner())
    assert record(project, time.time_ns() + 10**10, 4) is True  # as if started later
    import json

    data = json.loads((root / ".cpb" / RECORD).read_text())
    files = set(data["files"])
    for name in ("cpb.yaml", "base.tar", "modules", "modules/m1", "modules/m1/sub",
                 "modules/m1/module.yaml", "modules/m1/sub/install.sh",
                 ".cpb/render/base/image.yaml", ".cpb/state"):
        assert str(root / name) in files, name
    assert data["files"][str(root / ".cpb/render/base/image.yaml")] is None  # not there yet
    assert data["tasks"] == 4 and data["pods"] is False
    assert set(data["images"]) == {project.images["base"].digest_ref,
                                   project.images["base"].version_ref}


def test_inputs_changed_after_the_run_started_are_not_certified(tmp_path: Path) -> None:
    root = build_file_tree(tmp_path, FILES)
    (root / ".cpb").mkdir()
    (root / ".cpb" / RECORD).write_text("{}")
    project = open_project(root / "cpb.yaml", runner=FakeRunner())
    assert record(project, time.time_ns(), 4) is False  # files written a moment ago
    assert not (root / ".cpb" / RECORD).exists()  # and an older record is removed
