"""Faults that need no podman: hung commands, racing image listings, damaged state."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from cpb.adapters.podman import ImageStore
from cpb.adapters.runner import CommandFailed, ProcessRunner, Runner, stop_running
from cpb.errors import EnvironmentProblem
from cpb.project import open_project
from cpb.resolve.digest import FileHasher
from cpb.state import StateDir
from cpb.tasks.changes import well_formed
from cpb.tasks.doitapp import prepare_dep_file, run_doit
from cpb.tasks.images import run_build
from helpers import build_file_tree


def test_a_hung_command_is_a_failed_command_not_a_traceback(tmp_path: Path) -> None:
    runner = ProcessRunner()
    with pytest.raises(CommandFailed, match="did not finish within 0.5 s"):
        runner.run([sys.executable, "-c", "import time; time.sleep(30)"], timeout=0.5)
    log = tmp_path / "x.log"
    with pytest.raises(CommandFailed, match="did not finish within 0.5 s") as info:
        runner.run([sys.executable, "-c", "import time; time.sleep(30)"], timeout=0.5,
                   log_file=log)
    assert info.value.log_file == log


class FlakyRunner(ProcessRunner):
    """`podman images` failing like it does while another process removes images."""

    def __init__(self, failures: int, message: str) -> None:
        super().__init__()
        self.failures, self.message, self.calls = failures, message, 0

    def run(self, args: Sequence[str], **kwargs: Any) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise CommandFailed(args, 125, self.message, None)
        return json.dumps([{"Id": "abc", "Names": ["localhost/p/a:1"], "Labels": {"k": "v"}}])


RACE = ('Error: reading image "7e62": locating image with ID "7e62": image not known')


def test_image_listing_retries_a_race_with_a_concurrent_removal(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("cpb.adapters.podman.time.sleep", lambda seconds: None)
    runner = FlakyRunner(2, RACE)
    snap = ImageStore(runner, lister="podman").snapshot()
    assert snap.image_id("p/a:1") == "abc" and runner.calls == 3


def test_image_listing_gives_up_with_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("cpb.adapters.podman.time.sleep", lambda seconds: None)
    with pytest.raises(EnvironmentProblem, match="`podman images` failed: .*image not known"):
        ImageStore(FlakyRunner(99, RACE), lister="podman").snapshot()
    runner = FlakyRunner(10, "Error: permission denied")
    with pytest.raises(EnvironmentProblem, match="permission denied"):
        ImageStore(runner, lister="podman").snapshot()
    assert runner.calls == 1  # only a known race is retried


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
    runner = ProcessRunner()
    with state.lock() as fd:
        runner.keep_fds = (fd,)
        out = runner.run(["sh", "-c", f"ls -l /proc/self/fd/{fd}"])
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
    assert runner.calls == 2
    runner = FlakyRunner(5, LAYER_RACE)
    with pytest.raises(CommandFailed):
        run_build(_Project(runner), ["cekit"], tmp_path / "log", "build:a")  # type: ignore[arg-type]
    assert runner.calls == 2  # only once more
    runner = FlakyRunner(5, "STEP 3/9: RUN install.sh\nexit status 3")
    with pytest.raises(CommandFailed):
        run_build(_Project(runner), ["cekit"], tmp_path / "log", "build:a")  # type: ignore[arg-type]
    assert runner.calls == 1  # a real failure is not retried


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
    from fakes import FakeRunner
    from helpers import build_file_tree

    build_file_tree(tmp_path, {"cpb.yaml": "project: p\nimages:\n  a: {from: 'x:1'}\n"
                                           "  b: {from: 'x:1'}\n"})
    project = open_project(tmp_path / "cpb.yaml", runner=FakeRunner())
    assert all(t["verbosity"] == 2 for t in task_dicts(project))
    before = sys.stdout
    run_doit(project, ["render:a", "render:b"], jobs=2)
    assert sys.stdout is before
