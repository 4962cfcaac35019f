"""The bad input corpus: malformed and hostile cpb.yaml files (tests/data/bad-specs).

Each `NN-name.yaml` is copied as cpb.yaml into a copy of `_project/` and run
through the real CLI. `expected.json` records, per case, the exact error
line and exit code, and any symlink or FIFO the case needs (git cannot hold
a FIFO, and a symlink leaving the checkout is better made at run time).
Every case must end in that one line: no traceback, nothing on stdout,
nothing written under `.cpb/`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cpb.cli.app import main

DATA = Path(__file__).parent / "data" / "bad-specs"
EXPECTED: dict[str, dict[str, object]] = json.loads((DATA / "expected.json").read_text())
CASES = sorted(p.name for p in DATA.glob("*.yaml"))
SRC = Path(__file__).resolve().parents[1] / "src"


def make_case(tmp_path: Path, case: str) -> Path:
    root = tmp_path / "proj"
    shutil.copytree(DATA / "_project", root, symlinks=True)
    setup = EXPECTED[case]
    for link, target in dict(setup.get("symlinks", {})).items():  # type: ignore[call-overload]
        (root / link).symlink_to(target)
    for fifo in list(setup.get("fifos", [])):  # type: ignore[call-overload]
        os.mkfifo(root / fifo)
    shutil.copy(DATA / case, root / "cpb.yaml")
    return root


def test_the_corpus_is_complete() -> None:
    assert len(CASES) >= 40
    assert sorted(EXPECTED) == CASES, "every case needs an entry in expected.json, and back"


# Every case fails while the spec is loaded, which `plan` and `build` share;
# `build` also takes the project lock, and must refuse before it does (the
# lock lives in .cpb/): a few cases, one per stage of loading, show that.
BUILD_CASES = ["04-yaml-tab-indent.yaml", "14-yaml-alias-bomb.yaml",
               "45-image-name-semicolon.yaml", "70-module-symlink-outside.yaml",
               "73-from-mutual-cycle.yaml", "84-from-ref-semicolon.yaml"]


@pytest.mark.parametrize(("case", "command"), [
    *((case, "plan") for case in CASES), *((case, "build") for case in BUILD_CASES)])
def test_bad_spec_gives_one_clear_line(tmp_path: Path, case: str, command: str,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    root = make_case(tmp_path, case)
    started = time.monotonic()
    code = main(["-f", str(root / "cpb.yaml"), command])
    took = time.monotonic() - started
    out, err = capsys.readouterr()
    assert (code, err) == (EXPECTED[case]["exit"], EXPECTED[case]["stderr"] + "\n")
    assert out == ""
    assert "Traceback" not in err
    assert not (root / ".cpb").exists()
    assert took < 10, "refusing a spec must not take long (alias bomb, deep nesting)"


@pytest.mark.parametrize("case", ["04-yaml-tab-indent.yaml", "14-yaml-alias-bomb.yaml",
                                  "19-not-utf8-latin1.yaml", "45-image-name-semicolon.yaml",
                                  "70-module-symlink-outside.yaml", "73-from-mutual-cycle.yaml"])
def test_bad_spec_through_a_real_process(tmp_path: Path, case: str) -> None:
    root = make_case(tmp_path, case)
    proc = subprocess.run([sys.executable, "-m", "cpb", "-f", str(root / "cpb.yaml"), "plan"],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(SRC)})
    assert (proc.returncode, proc.stderr) == (EXPECTED[case]["exit"],
                                              EXPECTED[case]["stderr"] + "\n")
    assert proc.stdout == ""
    assert not (root / ".cpb").exists()


def test_a_50_megabyte_spec_is_refused_without_reading_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "cpb.yaml"
    with spec.open("w") as handle:
        handle.write("project: farm\nimages:\n")
        line = "  # " + "x" * 96 + "\n"
        handle.write(line * (50 * 1024 * 1024 // len(line)))
    assert spec.stat().st_size >= 50 * 1024 * 1024 - 100
    started = time.monotonic()
    code = main(["-f", str(spec), "plan"])
    _, err = capsys.readouterr()
    assert code == 2
    assert err == (f"cpb: error: cpb.yaml: file is {spec.stat().st_size} bytes; "
                   "the limit is 5242880\n")
    assert time.monotonic() - started < 5
    assert not (tmp_path / ".cpb").exists()


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_a_spec_that_is_not_a_regular_file(tmp_path: Path, kind: str,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    if kind == "fifo":
        spec = tmp_path / "cpb.yaml"
        os.mkfifo(spec)  # reading it would block forever
    else:
        spec = Path("/dev/zero")  # reading it would never end
    code = main(["-f", str(spec), "plan"])
    _, err = capsys.readouterr()
    assert (code, err) == (2, f"cpb: error: {spec.name}: not a regular file\n")


def test_missing_spec_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["-f", str(tmp_path / "nope.yaml"), "plan"])
    _, err = capsys.readouterr()
    assert (code, err) == (2, "cpb: error: nope.yaml: file not found\n")


@pytest.mark.parametrize("case", ["170-registry-url-credentials.yaml",
                                  "174-artifact-url-credentials.yaml"])
def test_a_password_in_a_url_is_never_printed(tmp_path: Path, case: str,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    root = make_case(tmp_path, case)
    assert "s3cret" in (root / "cpb.yaml").read_text()
    assert main(["-f", str(root / "cpb.yaml"), "plan"]) == 2
    out, err = capsys.readouterr()
    assert "holds credentials" in err
    assert "s3cret" not in out + err
