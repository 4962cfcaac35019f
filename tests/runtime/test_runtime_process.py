"""Running one task as a process: real processes, no NATS."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from runtime_pod import pid_gone, python_task, run, wait_until

from cpb_runtime.process import TaskProcess, task_environment


def test_a_task_runs_in_its_workdir_with_its_env(tmp_path: Path) -> None:
    code = "import os, sys; print(os.getcwd()); print(os.environ['GREETING']); " \
           "print('CP_NATS_URL' in os.environ, file=sys.stderr)"
    env = task_environment({"GREETING": "hello"}, base={**os.environ, "CP_NATS_URL": "x"})
    outcome = run(TaskProcess(python_task(code), cwd=str(tmp_path), env=env, timeout=10).run())
    assert outcome.succeeded and outcome.exit_code == 0
    assert outcome.stdout_tail.decode().split() == [str(tmp_path), "hello"]
    assert outcome.stderr_tail.decode().strip() == "False"  # the worker's settings stay its own


def test_only_the_tail_of_a_big_output_is_kept() -> None:
    code = "import sys; sys.stdout.write('a' * 300000 + 'END')"
    outcome = run(TaskProcess(python_task(code), cwd=None, env=os.environ, timeout=10).run())
    assert len(outcome.stdout_tail) == 64 * 1024 and outcome.stdout_tail.endswith(b"aEND")


def test_a_failing_task_reports_its_exit_code_and_stderr() -> None:
    code = "import sys; sys.stderr.write('boom\\n'); sys.exit(3)"
    outcome = run(TaskProcess(python_task(code), cwd=None, env=os.environ, timeout=10).run())
    assert (outcome.exit_code, outcome.stderr_tail, outcome.reason) == (3, b"boom\n", "")
    assert not outcome.succeeded


def test_start_failures_say_why(tmp_path: Path) -> None:
    missing = run(TaskProcess(["no-such-program-xyz"], cwd=None, env=os.environ,
                              timeout=5).run())
    assert missing.exit_code is None
    assert missing.reason == "could not start: executable not found: no-such-program-xyz"
    nowhere = run(TaskProcess(["true"], cwd=str(tmp_path / "nope"), env=os.environ,
                              timeout=5).run())
    assert nowhere.reason.startswith("could not start: no such working directory")
    (tmp_path / "script").write_text("#!/bin/sh\n")
    denied = run(TaskProcess([str(tmp_path / "script")], cwd=None, env=os.environ,
                             timeout=5).run())
    assert denied.reason.startswith("could not start: permission denied")


def test_a_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    code = (f"import subprocess; c = subprocess.Popen(['sleep', '60']); "
            f"open({str(pidfile)!r}, 'w').write(str(c.pid)); c.wait()")
    outcome = run(TaskProcess(python_task(code), cwd=None, env=os.environ, timeout=1).run())
    assert outcome.reason == "timed out after 1 s" and outcome.exit_code == -9
    assert 0.9 < outcome.duration_s < 5
    wait_until(lambda: pid_gone(int(pidfile.read_text())), 5, "the grandchild to die")


def test_what_a_task_leaves_behind_is_killed_too(tmp_path: Path) -> None:
    pidfile = tmp_path / "bg.pid"
    code = (f"import subprocess; c = subprocess.Popen(['sleep', '60']); "
            f"open({str(pidfile)!r}, 'w').write(str(c.pid))")  # exits, sleep keeps the pipes
    outcome = run(TaskProcess(python_task(code), cwd=None, env=os.environ, timeout=30).run())
    assert outcome.succeeded and outcome.duration_s < 5
    wait_until(lambda: pid_gone(int(pidfile.read_text())), 5, "the leftover to die")


def test_kill_ends_a_running_task_with_a_reason() -> None:
    async def scenario() -> tuple[str, int | None]:
        process = TaskProcess(["sleep", "30"], cwd=None, env=os.environ, timeout=60)
        running = asyncio.create_task(process.run())
        while process.pid is None:
            await asyncio.sleep(0.01)
        process.kill("cancelled while running")
        outcome = await running
        return outcome.reason, outcome.exit_code

    assert run(scenario()) == ("cancelled while running", -9)
