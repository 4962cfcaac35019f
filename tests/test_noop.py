"""The no-op fast path's pure logic: which command lines it answers, what it records.

The fast path itself, against real storage and real changes, is tested in
tests/integration/test_noop_fast_path.py.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from cpb.cli.app import cli, main
from cpb.cli.fastpath import fast_path, parse
from cpb.noop.record import RECORD
from cpb.noop.write import write
from cpb.project import open_project
from fakes import podman_fake
from helpers import build_file_tree


@pytest.mark.parametrize(("argv", "parsed"), [
    (["plan"], (None, "plan")),
    (["plan", "--exit-code"], (None, "plan")),
    (["-f", "x/cpb.yaml", "plan"], (Path("x/cpb.yaml"), "plan")),
    (["--file=x.yaml", "build"], (Path("x.yaml"), "build")),
    (["build", "-j", "4", "-x"], (None, "build")),
    (["build", "-j4", "--keep-going", "--jobs=2"], (None, "build")),
])
def test_plain_plan_and_build_are_answered(argv: list[str], parsed: object) -> None:
    assert parse(argv) == parsed


@pytest.mark.parametrize("argv", [
    [], ["status"], ["plan", "base"], ["plan", "--json"], ["plan", "--all"], ["plan", "--push"],
    ["build", "base"], ["build", "--push"], ["build", "-j"], ["build", "-j", "x"],
    ["-v", "plan"], ["--offline", "build"], ["--cache-dir", "c", "plan"], ["-f"],
    ["build", "--exit-code"], ["plan", "-j", "2"],
])
def test_anything_else_takes_the_full_path(argv: list[str]) -> None:
    assert parse(argv) is None


# The same command lines through both entries: valid and invalid ones.
LINES = [
    ["plan"], ["plan", "--exit-code"], ["build"], ["build", "-j", "2"], ["build", "-j2", "-x"],
    ["build", "--jobs=64", "--keep-going"], ["-f", "cpb.yaml", "build"], ["plan", "--json"],
    ["build", "-j", "0"], ["build", "-j", "65"], ["build", "-j", "x"], ["build", "--jobs=-1"],
    ["plan", "--exit-code=1"], ["plan", "--bogus"], ["build", "-k", "-z"], ["bild"],
    ["-f"], ["plan", "-j", "2"], ["build", "--exit-code"], ["-q", "plan"],
]


def full_cli_accepts(argv: list[str]) -> bool:
    """What the full CLI's click parsing says of the line (no command is run)."""
    import warnings

    import click

    try:
        with cli.make_context("cpb", list(argv)) as ctx, warnings.catch_warnings():
            # click 8.2 keeps the command's name in `protected_args` and warns about it
            warnings.simplefilter("ignore", DeprecationWarning)
            name, command, rest = cli.resolve_command(ctx, ctx.protected_args + ctx.args)
            assert command is not None
            command.make_context(name or "", rest, parent=ctx)
    except click.ClickException:
        return False
    return True


@pytest.mark.parametrize("argv", LINES)
def test_the_fast_path_and_the_full_cli_agree(argv: list[str], tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    root = build_file_tree(tmp_path, FILES)
    (root / ".cpb").mkdir()
    (root / ".cpb" / RECORD).write_text("{}")
    monkeypatch.chdir(root)
    monkeypatch.delenv("CPB_NO_FAST_PATH", raising=False)
    # the record says "nothing changed": whether the fast path answers is up to the line
    monkeypatch.setattr("cpb.cli.fastpath.unchanged", lambda *args: 3)
    fast = fast_path(argv)
    if full_cli_accepts(argv):
        assert fast in (0, None)  # answered, or left to the full path (--json)
    else:
        assert fast is None  # never answered: the full CLI refuses it...
        assert main(argv) == 2  # ...with the exit code of bad usage


FILES = {
    "cpb.yaml": "project: p\nimages:\n  base: {rootfs: {tar: base.tar}, modules: [m1]}\n",
    "base.tar": "x",
    "modules/m1/module.yaml": "name: m1\nversion: \"1\"\n",
    "modules/m1/sub/install.sh": "echo 1\n",
}


def test_a_fresh_checkout_gets_no_record(tmp_path: Path) -> None:
    root = build_file_tree(tmp_path, FILES)
    project = open_project(root / "cpb.yaml", runner=podman_fake())
    assert write(project, time.time_ns(), 4) is False
    assert not (root / ".cpb").exists()


def test_the_record_names_every_input(tmp_path: Path) -> None:
    root = build_file_tree(tmp_path, FILES)
    (root / ".cpb").mkdir()
    project = open_project(root / "cpb.yaml", runner=podman_fake())
    assert write(project, time.time_ns() + 10**10, 4) is True  # as if started later
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
    project = open_project(root / "cpb.yaml", runner=podman_fake())
    assert write(project, time.time_ns(), 4) is False  # files written a moment ago
    assert not (root / ".cpb" / RECORD).exists()  # and an older record is removed
