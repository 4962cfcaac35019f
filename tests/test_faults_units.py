"""Faults that need no podman: hung commands, racing image listings, damaged state."""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from doit.dependency import JSONCodec

from cpb.adapters.podman import ImageStore
from cpb.adapters.processes import end_groups, group_and_below, process_start
from cpb.adapters.runner import (
    CommandFailed,
    CommandsStopped,
    ProcessRunner,
    Runner,
    allow_commands,
    stop_running,
)
from cpb.cli.app import main
from cpb.errors import DiskFull, EnvironmentProblem, StateLocked, StateWriteError
from cpb.project import open_project
from cpb.resolve.digest import FileHasher
from cpb.state import LOCK_RECORD_SIZE, StateDir, fresh_file
from cpb.tasks.changes import well_formed
from cpb.tasks.doitapp import prepare_dep_file, run_doit
from cpb.tasks.doitdb import AtomicJsonDB
from cpb.tasks.images import run_build
from fakes import FakeRunner
from helpers import build_file_tree

SRC = Path(__file__).resolve().parents[1] / "src"


@pytest.fixture(autouse=True)
def _commands_allowed() -> Iterator[None]:
    """Tests here call stop_running, which leaves the runner refusing new commands."""
    yield
    allow_commands()


def test_a_hung_command_is_a_failed_command_not_a_traceback(tmp_path: Path) -> None:
    runner = ProcessRunner()
    with pytest.raises(CommandFailed, match="did not finish within 0.5 s"):
        runner.run([sys.executable, "-c", "import time; time.sleep(30)"], timeout=0.5)
    log = tmp_path / "x.log"
    with pytest.raises(CommandFailed, match="did not finish within 0.5 s") as info:
        runner.run([sys.executable, "-c", "import time; time.sleep(30)"], timeout=0.5,
                   log_file=log)
    assert info.value.log_file == log


LISTING = json.dumps([{"Id": "abc", "Names": ["localhost/p/a:1"], "Labels": {"k": "v"}}])


def FlakyRunner(failures: int, message: str) -> FakeRunner:  # noqa: N802
    """Every command failing `failures` times, like `podman images` while another
    process removes images; then answering with a listing."""
    return (FakeRunner().on("*", fails=(125, message), times=failures)
            .on("*", returns=LISTING))


RACE = ('Error: reading image "7e62": locating image with ID "7e62": image not known')


def test_image_listing_retries_a_race_with_a_concurrent_removal(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("cpb.adapters.podman.time.sleep", lambda seconds: None)
    runner = FlakyRunner(2, RACE)
    snap = ImageStore(runner, lister="podman").snapshot()
    assert snap.image_id("p/a:1") == "abc" and len(runner.calls) == 3


def test_image_listing_gives_up_with_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("cpb.adapters.podman.time.sleep", lambda seconds: None)
    with pytest.raises(EnvironmentProblem, match="`podman images` failed: .*image not known"):
        ImageStore(FlakyRunner(99, RACE), lister="podman").snapshot()
    runner = FlakyRunner(10, "Error: permission denied")
    with pytest.raises(EnvironmentProblem, match="permission denied"):
        ImageStore(runner, lister="podman").snapshot()
    assert len(runner.calls) == 1  # only a known race is retried


# -- damaged .cpb/ files: a warning and a fresh start, never a crash ----------

DAMAGE = ["", "{", '{"components": ', "\x00\x00\x00", "[]", '"text"', "42"]


@pytest.mark.parametrize("content", DAMAGE)
def test_damaged_stamp_reads_as_missing(tmp_path: Path, content: str,
                                        caplog: pytest.LogCaptureFixture) -> None:
    state = StateDir(tmp_path)
    state.write_stamp("build:a", {"digest": "x"})
    state.stamp_path("build:a").write_text(content)
    assert state.read_stamp("build:a") is None
    if content.startswith(("{", "\x00")) or content == "":
        assert "is corrupt" in caplog.text


@pytest.mark.parametrize("content", [*DAMAGE, '{"build:a": 5}', '{"build:a": []}'])
def test_damaged_doit_db_is_replaced_with_a_warning(tmp_path: Path, content: str,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    db = tmp_path / ".cpb" / "doit.json"
    db.parent.mkdir()
    db.write_text(content)
    with caplog.at_level(logging.WARNING):
        prepare_dep_file(tmp_path)
    assert not db.exists()
    assert "was damaged (an interrupted run?); starting it afresh" in caplog.text


def test_sound_doit_db_is_kept(tmp_path: Path) -> None:
    db = tmp_path / ".cpb" / "doit.json"
    db.parent.mkdir()
    db.write_text('{"build:a": {"_values_:": {}}}')
    prepare_dep_file(tmp_path)
    assert db.exists()


@pytest.mark.parametrize("content", [*DAMAGE, '{"/f": [1, 2, 3, "not a sha256"]}'])
def test_damaged_hash_cache_is_ignored(tmp_path: Path, content: str) -> None:
    data = tmp_path / "f"
    data.write_text("hello")
    cache = tmp_path / "hashes.json"
    cache.write_text(content.replace("/f", str(data)))
    hasher = FileHasher(cache)
    assert hasher.hash(data) == hashlib.sha256(b"hello").hexdigest()
    hasher.save()
    assert json.loads(cache.read_text())[str(data)][4] == hashlib.sha256(b"hello").hexdigest()


def test_a_hash_cache_entry_that_looks_current_but_is_garbage_is_not_trusted(
        tmp_path: Path) -> None:
    data = tmp_path / "f"
    data.write_text("hello")
    st = data.stat()
    cache = tmp_path / "hashes.json"
    cache.write_text(json.dumps({str(data): [st.st_size, st.st_mtime_ns, st.st_ino,
                                             st.st_ctime_ns, "x" * 3]}))
    assert FileHasher(cache).hash(data) == hashlib.sha256(b"hello").hexdigest()


@pytest.mark.parametrize("components", [
    "not a mapping", {"base": "x"}, {"files": ["a"]}, {"files": {"a": 1}}, {"spec": None}])
def test_plan_survives_a_stamp_of_the_wrong_shape(components: Any) -> None:
    assert well_formed(components) is False


def test_state_dir_that_is_a_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / ".cpb").write_text("not a folder")
    with pytest.raises(EnvironmentProblem, match=r"cannot use .*\.cpb: it is not a folder"), \
            StateDir(tmp_path).lock():
        pass


# -- interrupting commands: the whole process group stops ---------------------

def _gone(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    return "\nState:\tZ" in status  # a zombie waiting for init to reap it


def _wait_for_pid(path: Path) -> int:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        text = path.read_text().strip() if path.exists() else ""
        if text:
            return int(text)
        time.sleep(0.05)
    raise AssertionError("the command never started its child")


SCRIPT = 'sleep 60 & echo $! > "$1"; wait'
# A child in a session of its own, as runc starts a build step's container:
# out of the command's process group, still below it in the process tree.
ESCAPING = 'setsid sleep 60 & echo $! > "$1"; wait'


def test_ctrl_c_stops_the_command_and_its_children(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    def press_ctrl_c() -> None:
        _wait_for_pid(pidfile)
        os.kill(os.getpid(), signal.SIGINT)

    timer = threading.Timer(0.0, press_ctrl_c)
    timer.start()
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        ProcessRunner().run(["sh", "-c", SCRIPT, "sh", str(pidfile)])
    timer.join()
    assert time.monotonic() - started < 15
    assert _gone(_wait_for_pid(pidfile)), "the grandchild (podman under cekit) was left running"


def test_stop_running_ends_commands_of_other_threads(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    errors: list[BaseException] = []

    def build() -> None:
        try:
            ProcessRunner().run(["sh", "-c", SCRIPT, "sh", str(pidfile)], log_file=tmp_path / "log")
        except CommandFailed as exc:
            errors.append(exc)

    worker = threading.Thread(target=build)
    worker.start()
    grandchild = _wait_for_pid(pidfile)
    stop_running()
    worker.join(15)
    assert not worker.is_alive()
    assert len(errors) == 1 and _gone(grandchild)


def test_commands_inherit_the_lock(tmp_path: Path) -> None:
    """A build started by a cpb that is then killed keeps the project locked."""
    state = StateDir(tmp_path)
    with state.lock() as held:
        runner = ProcessRunner.holding(held)
        out = runner.run(["sh", "-c", f"ls -l /proc/self/fd/{held.fd}"])
    assert str(tmp_path / ".cpb" / "lock") in out


class _Store:
    def invalidate(self) -> None:
        pass


class _Project:
    def __init__(self, runner: Runner) -> None:
        self.runner, self.store = runner, _Store()


LAYER_RACE = ("Error: checking if cached image exists from a previous build: "
              "getting top layer info: layer not known")


def test_a_build_that_lost_a_storage_race_is_tried_once_more(tmp_path: Path) -> None:
    runner = FlakyRunner(1, LAYER_RACE)
    run_build(_Project(runner), ["cekit"], tmp_path / "log", "build:a")  # type: ignore[arg-type]
    assert len(runner.calls) == 2
    runner = FlakyRunner(5, LAYER_RACE)
    with pytest.raises(CommandFailed):
        run_build(_Project(runner), ["cekit"], tmp_path / "log", "build:a")  # type: ignore[arg-type]
    assert len(runner.calls) == 2  # only once more
    runner = FlakyRunner(5, "STEP 3/9: RUN install.sh\nexit status 3")
    with pytest.raises(CommandFailed):
        run_build(_Project(runner), ["cekit"], tmp_path / "log", "build:a")  # type: ignore[arg-type]
    assert len(runner.calls) == 1  # a real failure is not retried


def test_an_up_to_date_check_that_fails_is_not_a_traceback(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]
                                                            ) -> None:
    """podman hanging during doit's up-to-date checks: one FAIL line per task, exit 1."""
    build_file_tree(tmp_path, {"cpb.yaml": "project: p\nimages:\n  a: {rootfs: {tar: a.tar}}\n",
                               "a.tar": "x"})
    project = open_project(tmp_path / "cpb.yaml", runner=FlakyRunner(99, "Error: hung"))
    assert run_doit(project, ["tag:a"]) != 0  # `cpb build` turns any failure into exit 1
    out, err = capsys.readouterr()
    assert "FAIL rootfs:a: " in out and "Error: hung" in out
    assert "Traceback" not in out + err


def test_run_doit_leaves_sys_stdout_as_it_found_it(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import sys

    from cpb.project import open_project
    from cpb.tasks.doitapp import run_doit, task_dicts
    from fakes import podman_fake
    from helpers import build_file_tree

    build_file_tree(tmp_path, {"cpb.yaml": "project: p\nimages:\n  a: {from: 'x:1'}\n"
                                           "  b: {from: 'x:1'}\n"})
    project = open_project(tmp_path / "cpb.yaml", runner=podman_fake())
    assert all(t["verbosity"] == 2 for t in task_dicts(project))
    before = sys.stdout
    run_doit(project, ["render:a", "render:b"], jobs=2)
    assert sys.stdout is before


# -- a full disk: every write under .cpb/ is atomic and checked -----------------

def _no_space(*args: Any) -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_write_on_a_full_disk_is_one_line_and_keeps_the_old_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    state = StateDir(tmp_path)
    state.write_stamp("build:a", {"digest": "old"})
    monkeypatch.setattr("cpb.state.os.fsync", _no_space)
    with pytest.raises(DiskFull) as info:
        state.write_stamp("build:a", {"digest": "new"})
    assert str(info.value) == ("no space left on device writing .cpb/state/build/a.json; "
                               "images built so far are kept")
    assert info.value.exit_code == 3
    assert state.read_stamp("build:a") == {"digest": "old"}
    assert [p.name for p in state.stamp_path("build:a").parent.iterdir()] == ["a.json"]


def test_another_failed_write_is_one_line_too(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    def read_only(*args: Any) -> None:
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr("cpb.state.os.replace", read_only)
    with pytest.raises(StateWriteError, match=r"^cannot write \.cpb/logs/x\.log: "
                                              r"Read-only file system; images built"):
        fresh_file(tmp_path / ".cpb" / "logs" / "x.log")


def test_doits_database_is_never_truncated(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    db_file = tmp_path / "doit.json"
    db_file.write_text('{"t": {"k": "old"}}')
    db = AtomicJsonDB(str(db_file), JSONCodec())
    db.set("t", "k", "new")
    monkeypatch.setattr("cpb.state.os.fsync", _no_space)
    db.dump()  # no exception into doit: the run reports it afterwards
    assert json.loads(db_file.read_text()) == {"t": {"k": "old"}}
    monkeypatch.undo()
    db.dump()
    assert json.loads(db_file.read_text()) == {"t": {"k": "new"}}


def test_a_full_disk_inside_a_build_ends_the_run_with_one_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """The write fails inside doit's PythonAction, and again in doit's own dump."""
    from fakes import podman_fake

    build_file_tree(tmp_path, {"cpb.yaml": "project: p\nimages:\n  a: {from: 'x:1'}\n"
                                           "  b: {from: 'x:1'}\n"})
    project = open_project(tmp_path / "cpb.yaml", runner=podman_fake())
    run_doit(project, ["render:a"])
    before = (tmp_path / ".cpb" / "doit.json").read_text()
    capsys.readouterr()
    monkeypatch.setattr("cpb.state.os.fsync", _no_space)
    with pytest.raises(DiskFull, match=r"^no space left on device writing \.cpb/render/b/"
                                       r"image\.yaml; images built so far are kept$"):
        run_doit(project, ["render:b"])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err and "FAIL" not in out
    assert (tmp_path / ".cpb" / "doit.json").read_text() == before
    assert not list((tmp_path / ".cpb").rglob("*.tmp"))


def test_the_cli_says_it_in_one_line_and_exits_3(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from fakes import podman_fake

    build_file_tree(tmp_path, {"cpb.yaml": "project: p\nimages:\n  a: {from: 'x:1'}\n"})
    # no podman: the fault is the disk
    monkeypatch.setattr("cpb.cli.options.make_runner", lambda *lock: podman_fake())
    monkeypatch.setattr("cpb.state.os.fsync", _no_space)
    assert main(["-f", str(tmp_path / "cpb.yaml"), "build"]) == 3
    out, err = capsys.readouterr()
    assert err == ("cpb: error: no space left on device writing .cpb/render/a/image.yaml; "
                   "images built so far are kept\n")
    assert "FAIL" not in out


def test_a_command_that_failed_on_a_full_state_disk_is_reported_as_that(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """cekit writing under .cpb/build fails with its own message (or none, its log
    being on the full disk too): the run says what is wrong."""
    build_file_tree(tmp_path, {"cpb.yaml": "project: p\nimages:\n  a: {rootfs: {tar: a.tar}}\n",
                               "a.tar": "x"})
    project = open_project(tmp_path / "cpb.yaml", runner=FlakyRunner(99, "Error: cekit died"))
    monkeypatch.setattr("cpb.tasks.doitapp.no_space_left", lambda folder: True)
    with pytest.raises(DiskFull, match=r"^no space left on device writing \.cpb/ \(rootfs:a "
                                       r"failed: .*\); images built so far are kept$"):
        run_doit(project, ["tag:a"])


# -- the project lock names its owner and the process groups it started -------

def test_the_lock_records_its_owner_and_running_groups(tmp_path: Path) -> None:
    state = StateDir(tmp_path)
    lock_file = tmp_path / ".cpb" / "lock"
    with state.lock() as held:
        runner = ProcessRunner.holding(held)
        # The group is recorded just after the command started, so the command
        # waits (up to 10 s) for its entry "[PID," before it prints the record.
        script = ('echo $$; i=0; while [ $i -lt 200 ] && ! grep -q "\\[$$," "$1"; do '
                  'sleep 0.05; i=$((i+1)); done; cat "$1"')
        out = runner.run(["sh", "-c", script, "sh", str(lock_file)])
        after = json.loads(lock_file.read_text())
    pid_line, record = out.split("\n", 1)
    record = json.loads(record)
    assert record["pid"] == os.getpid() and record["start"] == process_start(os.getpid())
    assert [g[0] for g in record["groups"]] == [int(pid_line)]
    assert after["groups"] == []  # the command ended: nothing to clean up
    assert lock_file.stat().st_size == LOCK_RECORD_SIZE  # rewritten in place


KILLED_CPB = """
import os, signal, sys
from pathlib import Path
from cpb.adapters.runner import ProcessRunner
from cpb.state import StateDir
root, flag, daemons = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3] == "daemons"
with StateDir(root).lock() as held:
    runner = ProcessRunner.holding(held)
    # a build that outlives cpb: sleep under sh, one process group
    runner.run(["sh", "-c", 'sleep 300 & echo $! > "$1"; wait', "sh", str(flag)],
               leaves_daemons=daemons)
"""


def _recorded_groups(root: Path) -> list[list[int]]:
    try:
        return list(json.loads((root / ".cpb" / "lock").read_text())["groups"])
    except (OSError, ValueError, KeyError):
        return []


@pytest.mark.parametrize("inherits", [True, False], ids=["holding-the-lock", "not-holding-it"])
def test_a_run_after_a_kill_9_ends_what_the_dead_run_left(tmp_path: Path,
                                                          inherits: bool) -> None:
    """Whether the orphan holds the lock (a build) or not (`podman kube play`, whose
    conmons must not inherit it), the next run ends it at once and says so."""
    flag = tmp_path / "grandchild.pid"
    cpb = subprocess.Popen([sys.executable, "-c", KILLED_CPB, str(tmp_path), str(flag),
                            "inherits" if inherits else "daemons"],
                           env={**os.environ, "PYTHONPATH": str(SRC)})
    try:
        grandchild = _wait_for_pid(flag)
        # The runner records the command's group just after starting it; a kill -9
        # before that is a run that left nothing the next one can know of.
        deadline = time.monotonic() + 10
        while not _recorded_groups(tmp_path) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _recorded_groups(tmp_path)
        os.kill(cpb.pid, signal.SIGKILL)
        cpb.wait(10)
        assert not _gone(grandchild)  # orphaned, holding the lock it inherited
        said: list[str] = []
        started = time.monotonic()
        with StateDir(tmp_path).lock(wait=False, on_ended=said.append):
            pass
        assert time.monotonic() - started < 10  # it did not wait for the sleep
        assert _gone(grandchild)
        assert len(said) == 1 and said[0].startswith(
            f"the cpb run that held this project (pid {cpb.pid}) has ended; "
            "stopped what it left running: ")
        assert f"sleep (pid {grandchild})" in said[0]
    finally:
        cpb.kill()
        if flag.exists() and not _gone(int(flag.read_text())):
            os.kill(int(flag.read_text()), signal.SIGKILL)


def test_a_recorded_group_whose_number_was_reused_is_left_alone() -> None:
    other = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        start = process_start(other.pid)
        assert start is not None
        assert group_and_below(other.pid, start + 1) == []  # another process has the number
        assert end_groups([(other.pid, start + 1)], grace=0.5) == []
        assert other.poll() is None
        assert [p.pid for p in group_and_below(other.pid, start)] == [other.pid]
    finally:
        other.kill()
        other.wait()


def test_a_live_owner_is_waited_for_not_ended(tmp_path: Path) -> None:
    state = StateDir(tmp_path)
    with state.lock() as held, pytest.raises(StateLocked, match=rf"\(pid {held.pid}\)"), \
            StateDir(tmp_path).lock(wait=False):  # the owner (this process) is alive
        pass


# -- SIGTERM and SIGHUP are handled like Ctrl-C --------------------------------

SIGNALLED_CPB = """
import sys
from cpb.adapters.runner import ProcessRunner, stop_running
from cpb.cli.session import interruption, signals_interrupt
with signals_interrupt():
    try:
        ProcessRunner().run(["sh", "-c", 'sleep 300 & echo $! > "$1"; wait', "sh", sys.argv[1]])
    except KeyboardInterrupt as exc:
        stop_running()
        code, message = interruption(exc)
        print(message, file=sys.stderr)
        sys.exit(code)
"""


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGHUP, 129),
                                           (signal.SIGINT, 130)])
def test_sigterm_and_sighup_stop_the_commands_like_ctrl_c(tmp_path: Path, sig: int,
                                                           code: int) -> None:
    flag = tmp_path / "grandchild.pid"
    proc = subprocess.Popen([sys.executable, "-c", SIGNALLED_CPB, str(flag)],
                            env={**os.environ, "PYTHONPATH": str(SRC)},
                            stderr=subprocess.PIPE, text=True)
    grandchild = _wait_for_pid(flag)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == code
    word = "interrupted" if sig == signal.SIGINT else "terminated"
    assert err == f"{word}; everything finished so far is kept\n"
    assert _gone(grandchild)


def test_stopping_a_command_stops_what_left_its_process_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    errors: list[BaseException] = []

    def build() -> None:
        try:
            ProcessRunner().run(["sh", "-c", ESCAPING, "sh", str(pidfile)],
                                log_file=tmp_path / "log")
        except CommandFailed as exc:
            errors.append(exc)

    worker = threading.Thread(target=build)
    worker.start()
    escaped = _wait_for_pid(pidfile)
    deadline = time.monotonic() + 10
    while os.getpgid(escaped) == os.getpgid(os.getpid()) and time.monotonic() < deadline:
        time.sleep(0.05)  # setsid has not run yet
    stop_running()
    worker.join(15)
    assert not worker.is_alive() and len(errors) == 1
    assert _gone(escaped), "a process in a session of its own outlived its command"


def test_after_stop_running_no_new_command_starts(tmp_path: Path) -> None:
    """After Ctrl-C, doit's other threads go on to their next step; a command it
    would start then would outlive cpb (it was seen: a `podman image inspect`)."""
    stop_running()
    with pytest.raises(CommandsStopped, match="not started, cpb is stopping: sh"):
        ProcessRunner().run(["sh", "-c", "true"])
    allow_commands()
    assert ProcessRunner().run(["sh", "-c", "echo again"]) == "again\n"
