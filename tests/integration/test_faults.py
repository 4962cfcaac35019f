"""Faults and concurrent runs on real builds (busybox base, real cekit and podman).

cpb runs here as a real process (`python -m cpb`) so that it can be killed
with SIGKILL, interrupted with SIGINT, and run twice at once. Only processes
these tests start are signalled.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cpb.cli.app import main
from helpers import image_ids, module

pytestmark = pytest.mark.integration
SRC = Path(__file__).resolve().parents[2] / "src"

SPEC = """
project: "@PROJECT@"
images:
  base:
    rootfs: {tar: busybox.tar}
    version: "1"
  slow:
    from: base
    modules: [m-slow]
  after-slow:
    from: slow
    modules: [m-leaf]
  other:
    from: base
    modules: [m-other]
"""
IMAGES = {"base:1", "slow:latest", "after-slow:latest", "other:latest"}


# The slow module runs for 20 s in a shell named after the project (so that
# pgrep finds it, and only it); tests act on the "slow-started" line in its
# log, never on a timer.
SLEEPER = ("sh -c 'i=0; while [ $i -lt 20 ]; do sleep 1; i=$((i+1)); done' "
           "@PROJECT@-sleeper")
FILES = {
    **module("m-slow", f"echo slow-started; {SLEEPER}; echo slow > /etc/slow"),
    **module("m-leaf", "cat /etc/slow > /etc/leaf"),
    **module("m-other", "echo other > /etc/other"),
}


_started: list[subprocess.Popen[str]] = []


@pytest.fixture(autouse=True)
def _stop_what_we_started() -> Iterator[None]:
    """A failed test must not leave its cpb (and cekit, podman) running."""
    yield
    while _started:
        proc = _started.pop()
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # cpb stops its commands' process groups
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def start(root: Path, *argv: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    # Output goes to files, not pipes: nobody reads a pipe while a test waits.
    number = len(list(root.parent.glob("run-*.out")))
    out, err = root.parent / f"run-{number}.out", root.parent / f"run-{number}.err"
    with out.open("w") as stdout, err.open("w") as stderr:
        proc = subprocess.Popen([sys.executable, "-m", "cpb", "-f", str(root / "cpb.yaml"),
                                 *argv], stdout=stdout, stderr=stderr, text=True, env=env)
    proc.outputs = (out, err)  # type: ignore[attr-defined]
    _started.append(proc)
    return proc


def finish(proc: subprocess.Popen[str], timeout: float = 1200) -> tuple[int, str, str]:
    proc.wait(timeout=timeout)
    out, err = proc.outputs  # type: ignore[attr-defined]
    return proc.returncode, out.read_text(), err.read_text()


def wait_for(what: str, check: Callable[[], bool], proc: subprocess.Popen[str],
             logs: Path, timeout: float = 900) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if proc.poll() is not None:
            _, out, err = finish(proc)
            raise AssertionError(f"cpb ended ({proc.returncode}) before {what}:\n{out}\n{err}")
        time.sleep(0.2)
    tails = {p.name: p.read_text(errors="replace")[-2000:] for p in logs.glob("*.log")}
    raise AssertionError(f"timed out waiting for {what}; logs: {tails}")


def log_says(root: Path, task: str, text: str) -> Callable[[], bool]:
    path = root / ".cpb" / "logs" / f"{task}.log"
    return lambda: path.exists() and text in path.read_text(errors="replace")


def assert_state_is_whole(root: Path) -> None:
    """Every record under .cpb/ parses: nothing half-written, nothing mixed."""
    state = root / ".cpb"
    records = [*state.glob("state/*/*.json"), state / "hashes.json", state / "doit.json"]
    for path in records:
        if path.exists():
            json.loads(path.read_text())  # raises on a torn or mixed file
    leftovers = [p for p in state.rglob("*.tmp") if "build" not in p.parts]
    assert leftovers == []


def our_processes(root: Path) -> list[str]:
    """Commands still running with this project's path or name in their arguments
    (cekit, podman build, the module's sleeper in the build container)."""
    name = json.dumps(root.joinpath("cpb.yaml").read_text().split("project: ", 1)[1]
                      .split("\n", 1)[0].strip('"'))[1:-1]
    found = []
    for marker in (str(root), name):
        out = subprocess.run(["pgrep", "-af", marker], capture_output=True, text=True).stdout
        found += [line for line in out.splitlines() if "pgrep" not in line]
    return found


def plan_is_empty(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["-f", str(root / "cpb.yaml"), "plan", "--exit-code"])
    out, _ = capsys.readouterr()
    assert code == 0, out
    assert "nothing to do" in out


def test_kill_9_during_a_build_then_rerun(make_project, project_name: str,  # type: ignore[no-untyped-def]
                                          capsys: pytest.CaptureFixture[str]) -> None:
    root = make_project(SPEC, FILES)
    first = start(root, "build")
    wait_for("the slow image's script", log_says(root, "build-slow", "slow-started"), first,
             root / ".cpb" / "logs")
    first.send_signal(signal.SIGKILL)
    first.wait(30)
    # cekit, started by the killed cpb, is still building 'slow' (its module
    # sleeps for minutes) and holds the lock it inherited; the lock names it.
    assert our_processes(root) != []
    record = json.loads((root / ".cpb" / "lock").read_text())
    assert record["pid"] == first.pid and record["groups"]
    started = time.monotonic()
    code, out, err = finish(start(root, "build"))
    assert code == 0, out + err
    # The rerun ended the orphans at once instead of waiting for them...
    assert (f"the cpb run that held this project (pid {first.pid}) has ended; "
            "stopped what it left running: cekit (pid ") in err
    assert "waiting for another cpb run" not in err
    assert "ok  build:slow" in out  # ...and built 'slow' itself
    assert time.monotonic() - started < 300
    assert "Traceback" not in err
    assert set(image_ids(project_name)) >= IMAGES
    assert_state_is_whole(root)
    plan_is_empty(root, capsys)


def test_ctrl_c_exits_130_and_leaves_nothing_running(make_project, project_name: str,  # type: ignore[no-untyped-def]
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    root = make_project(SPEC, FILES)
    proc = start(root, "build", "-j", "2")
    wait_for("the slow image's script", log_says(root, "build-slow", "slow-started"), proc,
             root / ".cpb" / "logs")
    proc.send_signal(signal.SIGINT)
    code, out, err = finish(proc, timeout=120)
    assert code == 130
    assert err.endswith("interrupted; everything finished so far is kept\n")
    assert "Traceback" not in err
    assert our_processes(root) == []  # cekit and the podman build under it stopped too
    assert "slow:latest" not in image_ids(project_name)
    assert_state_is_whole(root)
    code, out, err = finish(start(root, "build", "-j", "2"))
    assert code == 0, out + err
    assert "ok  build:slow" in out
    assert set(image_ids(project_name)) >= IMAGES
    plan_is_empty(root, capsys)


FAILING = """
project: "@PROJECT@"
images:
  base:
    rootfs: {tar: busybox.tar}
    version: "1"
  bad:
    from: base
    modules: [m-bad]
  bad-child:
    from: bad
    modules: [m-other]
  zgood:
    from: base
    modules: [m-other]
"""


def test_fail_fast_and_keep_going(make_project, project_name: str) -> None:  # type: ignore[no-untyped-def]
    root = make_project(FAILING, {**FILES, **module("m-bad", "echo about to fail; exit 3")})
    log = root / ".cpb" / "logs" / "build-bad.log"

    code, out, err = finish(start(root, "build", "--fail-fast"))
    assert code == 1
    assert f"FAIL build:bad: cekit exited with 1; log: {log}\n" in out
    assert "about to fail" in log.read_text()
    assert "build:zgood" not in out  # fail-fast: nothing started after the failure
    built = set(image_ids(project_name))
    assert any(t.startswith("base:cpb-") for t in built)  # built before the failure
    assert not any(t.startswith(("bad", "zgood")) for t in built)

    code, out, err = finish(start(root, "build", "--keep-going"))
    assert code == 1
    assert f"FAIL build:bad: cekit exited with 1; log: {log}\n" in out
    assert "FAIL build:bad-child: not run: a task it needs failed" in out
    assert "ok  build:zgood" in out  # everything that does not need 'bad' is built
    built = set(image_ids(project_name))
    assert "zgood:latest" in built and not any(t.startswith("bad") for t in built)
    assert "Traceback" not in out + err
    assert_state_is_whole(root)


def test_build_help_documents_both_modes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["build", "--help"]) == 0
    out = " ".join(capsys.readouterr()[0].split())  # click wraps the help text
    assert "--keep-going / -x, --fail-fast" in out
    assert "After a failure, go on with images that do not depend on it." in out


def test_two_builds_at_once_then_damaged_state(make_project, project_name: str,  # type: ignore[no-untyped-def]
                                               capsys: pytest.CaptureFixture[str]) -> None:
    root = make_project(SPEC, {**FILES, **module("m-slow", "echo slow-started; sleep 1; "
                                                  "echo slow > /etc/slow")})
    first = start(root, "build")
    lock = root / ".cpb" / "lock"
    wait_for("the first build to take the lock",
             lambda: lock.exists() and lock.read_text() == f"pid {first.pid}", first,
             root / ".cpb" / "logs")
    second = start(root, "build")
    code1, out1, err1 = finish(first)
    code2, out2, err2 = finish(second)
    assert (code1, code2) == (0, 0), out1 + err1 + out2 + err2
    assert (f"waiting for another cpb run in this project (pid {first.pid}) to finish..."
            in err2)
    assert out1.count("  ok  build:") == 4  # every image built once, by the first
    assert out2.splitlines()[-1].startswith("0 done")  # the second found them all there
    assert set(image_ids(project_name)) >= IMAGES
    assert_state_is_whole(root)

    # Damage every record: truncated, garbage, wrong shape.
    state = root / ".cpb"
    for path in state.glob("state/*/*.json"):
        path.write_text(path.read_text()[: len(path.read_text()) // 2])
    (state / "hashes.json").write_text("\x00\x00")
    (state / "doit.json").write_text('{"build:slow": 7}')
    code, out, err = finish(start(root, "plan", "--exit-code"))
    assert (code, out.splitlines()[-1]) == (0, "nothing to do: all 13 tasks up to date"), out
    assert "was unreadable; hashing files afresh" in err and "Traceback" not in err
    code, out, err = finish(start(root, "build"))
    assert code == 0, out + err
    assert out.splitlines()[-1].startswith("0 done")  # images are the truth, not records
    assert "was damaged (an interrupted run?); starting it afresh" in err
    assert_state_is_whole(root)

    # A stamp of the wrong shape, and an input change that makes plan read it.
    (state / "state" / "build" / "other.json").write_text('{"components": {"files": [1]}}')
    script = root / "modules" / "m-other" / "install.sh"
    script.write_text(script.read_text() + "echo again >> /etc/other\n")
    code, out, err = finish(start(root, "plan"))
    assert code == 0 and "Traceback" not in err
    assert "build:other\n    - the record of the last build in .cpb/ is damaged\n" in out
