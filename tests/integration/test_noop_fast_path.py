"""The no-op fast path (cpb.cli.fastpath) on a real project in real podman storage.

A second no-op `cpb plan` / `cpb build` is answered from .cpb/noop.json
without importing the pipeline (checked with `python -X importtime`: no
cpb.graph, no doit). Every kind of change must send the next run down the full
path, which then says what is pending. cekit's build step is the benchmark's
stub (a one-line `podman build`); podman, buildah and cpb are real.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmarks.synthetic import StubRunner, artifact_files, make_synthetic, module_files
from cpb.noop.record import RECORD
from cpb.project import open_project
from cpb.state import RACY_MARGIN_NS
from cpb.tasks.doitapp import run_doit
from helpers import podman

pytestmark = pytest.mark.integration
LEAF = "l2-0000"


def cpb(root: Path, *args: str, env: dict[str, str] | None = None
        ) -> tuple[int, str, str, bool]:
    """(exit code, stdout, stderr without import times, took the full path)."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "cpb", *args], cwd=root,
                          capture_output=True, text=True, env={**os.environ, **(env or {})},
                          check=False)
    imports = [line for line in proc.stderr.splitlines() if line.startswith("import time:")]
    err = "\n".join(line for line in proc.stderr.splitlines()
                    if not line.startswith("import time:"))
    full = any(line.rstrip().endswith((" cpb.graph", " doit")) for line in imports)
    return proc.returncode, proc.stdout, err, full


def settle() -> None:
    """Wait until what the last run wrote is older than the racy margin."""
    time.sleep(RACY_MARGIN_NS / 1e9 + 0.2)


@pytest.fixture
def built(tmp_path: Path, project_name: str) -> Path:
    root = tmp_path / "p"
    make_synthetic(root, project_name, 4, bases=1, levels=2)
    project = open_project(root / "cpb.yaml", runner=StubRunner())
    with contextlib.redirect_stdout(io.StringIO()):
        assert run_doit(project, [], jobs=2) == 0
    settle()
    code, out, err, full = cpb(root, "plan")  # the full path, which writes the record
    assert (code, full) == (0, True), err
    assert out == "nothing to do: all 13 tasks up to date\n"
    assert (root / ".cpb" / RECORD).is_file()
    return root


def test_a_second_no_op_takes_the_fast_path(built: Path) -> None:
    code, out, err, full = cpb(built, "plan")
    assert (code, out, err, full) == (0, "nothing to do: all 13 tasks up to date\n", "", False)
    code, out, err, full = cpb(built, "build", "-j", "2")
    assert (code, out, err, full) == (0, "0 done, 13 up to date\n", "", False)
    code, out, _, full = cpb(built, "plan", "--exit-code")
    assert (code, full) == (0, False)
    # options the fast path does not know take the full path, same answer
    code, out, _, full = cpb(built, "plan", "--all")
    assert code == 0 and full and out.endswith("nothing to do: all 13 tasks up to date\n")
    code, out, _, full = cpb(built, "plan", env={"CPB_NO_FAST_PATH": "1"})
    assert (code, out, full) == (0, "nothing to do: all 13 tasks up to date\n", True)
    assert cpb(built, "plan")[3] is False  # the full run's record serves a plain run


def test_an_edit_that_keeps_size_and_mtime_is_still_seen(built: Path) -> None:
    data = module_files(built, LEAF)[2]
    before = data.stat()
    text = data.read_text()
    data.write_text(text.replace("data", "DATA"))  # same size
    os.utime(data, ns=(before.st_atime_ns, before.st_mtime_ns))  # same mtime: ctime moved
    code, out, _, full = cpb(built, "plan")
    assert code == 0 and full
    assert f"module file modules/{LEAF}-a/data.txt changed" in out


@pytest.mark.parametrize("change", ["new module file", "spec", "artifact", "untagged",
                                    "retagged", "record damaged", "environment"])
def test_every_change_takes_the_full_path(built: Path, project_name: str, change: str) -> None:
    env: dict[str, str] = {}
    expected = ""
    if change == "new module file":
        (built / "modules" / f"{LEAF}-b" / "extra.txt").write_text("new\n")
        expected = f"module file modules/{LEAF}-b/extra.txt added"
    elif change == "spec":
        spec = built / "cpb.yaml"
        spec.write_text(spec.read_text().replace(f"  {LEAF}:\n",
                                                 f"  {LEAF}:\n    labels: {{a: b}}\n"))
        expected = f"spec field images.{LEAF}.labels changed"
    elif change == "artifact":
        artifact_files(built, LEAF)[0].write_bytes(b"other bytes")
        expected = f"artifact {LEAF}-1.bin changed"
    elif change == "untagged":
        ref = f"localhost/{project_name}/{LEAF}:1"
        podman("untag", ref, ref)  # that name only
        expected = f"tag localhost/{project_name}/{LEAF}:1 does not point at"
    elif change == "retagged":
        podman("tag", f"localhost/{project_name}/base00:1", f"localhost/{project_name}/{LEAF}:1")
        expected = f"tag localhost/{project_name}/{LEAF}:1 does not point at"
    elif change == "record damaged":
        stamp = built / ".cpb" / "state" / "build" / f"{LEAF}.json"
        stamp.write_text(stamp.read_text()[:10])
    elif change == "environment":
        env = {"CPB_CACHE_DIR": str(built / "another-cache")}
    code, out, err, full = cpb(built, "plan", env=env)
    assert full, f"{change}: answered from the record"
    assert expected in out, out
    if change == "record damaged":
        # the plan trusts the image by its label, and writes nothing (issue 11);
        # the next build repairs the record from local storage
        assert "is corrupt" in err
        stamp = built / ".cpb/state/build" / f"{LEAF}.json"
        assert len(stamp.read_text()) == 10
        cpb(built, "build")
        assert json.loads(stamp.read_text())["digest"]


def test_no_record_for_inputs_changed_during_the_run(built: Path) -> None:
    (built / ".cpb" / RECORD).unlink()
    data = module_files(built, LEAF)[0]
    data.write_text(data.read_text())  # same content, changed just now
    code, out, _, full = cpb(built, "plan")
    assert (code, full) == (0, True) and "nothing to do" in out
    assert not (built / ".cpb" / RECORD).exists()  # too recent to certify
    settle()
    assert cpb(built, "plan")[3] is True  # writes it now
    assert cpb(built, "plan")[3] is False

