"""MajorDomo, workers and the client against a real nats-server with JetStream.

Every component is a real subprocess; failures are real (SIGKILL, timeouts,
missing programs). Timings come from the components' environment (conftest:
ack wait 2 s, heartbeats every 0.3 s).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from runtime_pod import Pod, pid_gone, python_task, run, wait_until, wait_until_async

from cpb_runtime import Client, JobOutcome, JobRefused, LostContact, Progress, new_job_id
from cpb_runtime import protocol as p


def logged_task(log: Path, name: str, seconds: float = 0.0) -> dict[str, Any]:
    """A task that appends its name to ``log`` when it finishes: one line per real run."""
    script = 'sleep "$1"; echo "$2" >> "$3"'
    return {"argv": ["sh", "-c", script, "task", str(seconds), name, str(log)], "name": name}


def runs_of(log: Path) -> Counter[str]:
    return Counter(log.read_text().split()) if log.exists() else Counter()


async def stream_messages(client: Client, stream: str) -> int:
    info = await client.nc.jetstream().stream_info(stream)
    return int(info.state.messages)


async def start(pod: Pod, *workers: str, slots: int = 2, **md_env: str) -> Client:
    pod.start_majordomo(**md_env)
    for name in workers:
        pod.start_worker(name, slots=slots)
    client = await pod.client()
    await pod.wait_ready(client, *workers)
    return client


def test_a_job_runs_every_task_and_reports_its_output(pod: Pod) -> None:
    job = {"kind": "test", "tasks": [{"argv": ["echo", f"out {i}"], "name": f"t{i}"}
                                     for i in range(20)]}
    steps: list[Progress] = []

    async def scenario() -> tuple[JobOutcome, int]:
        async with await start(pod, "w1") as client:
            outcome = await client.run(job, on_progress=steps.append)
            await wait_until_async(
                lambda: _no_messages(client, p.TASK_STREAM), 5, "the task stream to empty")
            return outcome, await stream_messages(client, p.RESULT_STREAM)

    outcome, results_left = run(scenario())
    assert outcome.state == "succeeded" and outcome.counts.succeeded == 20
    assert [r.name for r in outcome.results] == [f"t{i}" for i in range(20)]
    assert [r.stdout_tail for r in outcome.results] == [f"out {i}\n" for i in range(20)]
    assert all((r.exit_code, r.attempt, r.worker, r.reason) == (0, 1, "w1", "")
               for r in outcome.results)
    assert all(r.duration_s > 0 for r in outcome.results)
    assert steps[-1].final and steps[-1].counts.succeeded == 20
    assert {r.name for s in steps for r in s.new_results} == {f"t{i}" for i in range(20)}
    assert results_left == 0  # MajorDomo consumed (and acknowledged) every result


async def _no_messages(client: Client, stream: str) -> bool:
    return await stream_messages(client, stream) == 0


def test_two_workers_share_a_job_and_no_task_runs_twice(pod: Pod) -> None:
    log = pod.dir / "runs.txt"
    job = {"kind": "test", "tasks": [logged_task(log, f"t{i}", 0.05) for i in range(24)]}

    async def scenario() -> JobOutcome:
        async with await start(pod, "w1", "w2") as client:
            return await client.run(job)

    outcome = run(scenario())
    assert outcome.state == "succeeded"
    assert {r.worker for r in outcome.results} == {"w1", "w2"}
    assert runs_of(log) == Counter({f"t{i}": 1 for i in range(24)})
    assert all(r.attempt == 1 for r in outcome.results)


@pytest.mark.slow
def test_a_killed_workers_task_is_run_by_the_other_worker(pod: Pod) -> None:
    log = pod.dir / "runs.txt"
    starts = pod.dir / "starts.txt"
    code = ("import os, sys, time; name = sys.argv[1]; "
            f"open({str(starts)!r}, 'a').write(f'{{name}} {{os.getpid()}} {{os.getppid()}}\\n'); "
            f"time.sleep(1.0); open({str(log)!r}, 'a').write(name + '\\n')")
    job = {"kind": "test", "tasks": [{"argv": [*python_task(code), f"t{i}"], "name": f"t{i}"}
                                     for i in range(4)]}

    async def scenario() -> tuple[JobOutcome, str]:
        async with await start(pod, "w1", "w2", slots=1) as client:
            running = asyncio.create_task(client.run(job))
            w1 = pod.procs["w1"].pid

            def w1_task() -> tuple[str, int] | None:
                for line in starts.read_text().splitlines() if starts.exists() else []:
                    name, pid, parent = line.split()
                    if int(parent) == w1:
                        return name, int(pid)
                return None

            await wait_until_async(_async(lambda: w1_task() is not None), 10, "w1 to start a task")
            found = w1_task()
            assert found is not None
            name, pid = found
            # The container dies: the worker and the task it runs.
            pod.kill("w1")
            os.killpg(pid, signal.SIGKILL)
            return await asyncio.wait_for(running, 30), name

    outcome, lost = run(scenario())
    assert outcome.state == "succeeded"
    assert runs_of(log) == Counter({f"t{i}": 1 for i in range(4)})  # each exactly once
    redone = outcome.results[int(lost[1:])]
    assert (redone.worker, redone.attempt, redone.state) == ("w2", 2, "succeeded")


@pytest.mark.slow
def test_a_task_longer_than_the_ack_wait_is_kept_alive_not_redelivered(pod: Pod) -> None:
    log = pod.dir / "runs.txt"
    job = {"kind": "test", "tasks": [logged_task(log, "long", 5.0)]}  # ack wait: 2 s

    async def scenario() -> JobOutcome:
        async with await start(pod, "w1", "w2") as client:
            return await client.run(job)

    (result,) = run(scenario()).results
    assert (result.state, result.attempt) == ("succeeded", 1)
    assert runs_of(log) == Counter({"long": 1})


@pytest.mark.slow
def test_a_hanging_task_is_killed_with_its_process_group_at_its_timeout(pod: Pod) -> None:
    pidfile = pod.dir / "child.pid"
    code = (f"import subprocess; c = subprocess.Popen(['sleep', '60']); "
            f"open({str(pidfile)!r}, 'w').write(str(c.pid)); c.wait()")
    job = {"kind": "test", "timeout": 1, "tasks": [{"argv": python_task(code), "name": "hang"}]}

    async def scenario() -> JobOutcome:
        async with await start(pod, "w1") as client:
            return await client.run(job)

    started = time.monotonic()
    outcome = run(scenario())
    (result,) = outcome.results
    assert outcome.state == "failed" and result.state == "failed"
    assert result.reason == "timed out after 1 s" and result.exit_code == -9
    assert 1.0 <= result.duration_s < 3 and time.monotonic() - started < 20
    assert pid_gone(int(pidfile.read_text()))  # the task's child died with it


def test_a_missing_executable_is_reported_failed(pod: Pod) -> None:
    job = {"kind": "test", "tasks": [{"argv": ["no-such-compiler", "-c", "a.c"]}, ["true"]]}

    async def scenario() -> JobOutcome:
        async with await start(pod, "w1") as client:
            return await client.run(job)

    outcome = run(scenario())
    missing, fine = outcome.results
    assert outcome.state == "failed" and outcome.counts == p.Counts(2, 0, 0, 1, 1, 0)
    assert (missing.state, missing.exit_code) == ("failed", None)
    assert missing.reason == "could not start: executable not found: no-such-compiler"
    assert fine.state == "succeeded"


def test_a_failing_task_reports_its_exit_code_and_stderr_tail(pod: Pod) -> None:
    code = ("import sys; sys.stderr.write('x' * 100000 + '\\nerror: a.c:3: oops\\n'); "
            "print('partial'); sys.exit(3)")
    job = {"kind": "test", "tasks": [{"argv": python_task(code), "name": "a.o"}]}

    async def scenario() -> JobOutcome:
        async with await start(pod, "w1") as client:
            return await client.run(job)

    (result,) = run(scenario()).results
    assert (result.state, result.exit_code, result.reason) == ("failed", 3, "")
    assert result.stderr_tail.endswith("error: a.c:3: oops\n")
    assert len(result.stderr_tail.encode()) == p.TAIL_BYTES
    assert result.stdout_tail == "partial\n"


def test_a_job_for_a_kind_without_live_workers_is_refused_at_once(pod: Pod) -> None:
    async def scenario() -> tuple[str, float, str]:
        async with await start(pod, "w1") as client:
            started = time.monotonic()
            with pytest.raises(JobRefused) as other:
                await client.submit({"kind": "gcc", "tasks": [["true"]]})
            took = time.monotonic() - started
            pod.kill("w1", signal.SIGTERM)  # a stopping worker takes no new job
            pod.procs["w1"].wait(10)
            with pytest.raises(JobRefused) as stopped:
                await client.submit({"kind": "test", "tasks": [["true"]]})
            return other.value.reason, took, stopped.value.reason

    other, took, stopped = run(scenario())
    assert other == "no live worker of kind 'gcc' (live kinds: test)"
    assert took < 1.0
    assert stopped == "no live worker of kind 'test' (no worker is alive)"


@pytest.mark.slow
def test_majordomo_killed_and_restarted_mid_job_the_job_completes(pod: Pod) -> None:
    log = pod.dir / "runs.txt"
    job = {"kind": "test", "tasks": [logged_task(log, f"t{i}", 0.3) for i in range(16)]}

    async def scenario() -> JobOutcome:
        async with await start(pod, "w1", "w2", slots=1) as client:
            running = asyncio.create_task(client.run(job))
            await wait_until_async(_async(lambda: sum(runs_of(log).values()) >= 3), 20,
                                   "three tasks done")
            pod.kill("majordomo")
            await asyncio.sleep(2.0)  # results pile up in their stream meanwhile
            assert sum(runs_of(log).values()) > 3
            pod.start_majordomo()
            return await asyncio.wait_for(running, 40)

    outcome = run(scenario())
    assert outcome.state == "succeeded" and outcome.counts.succeeded == 16
    assert runs_of(log) == Counter({f"t{i}": 1 for i in range(16)})
    assert "ready: 1 unfinished job(s) reloaded" in pod.log("majordomo").read_text()


@pytest.mark.slow
def test_a_task_whose_workers_all_die_is_failed_as_worker_lost(pod: Pod) -> None:
    killer = python_task("import os, signal; os.kill(os.getppid(), signal.SIGKILL)")
    job = {"kind": "test", "tasks": [{"argv": killer, "name": "killer"}, ["true"]]}

    async def scenario() -> JobOutcome:
        async with await start(pod, "w1", slots=1, CP_MAX_DELIVER="2") as client:

            async def restarter() -> None:  # what podman's restart policy would do
                while True:
                    if not pod.alive("w1"):
                        pod.start_worker("w1", slots=1)
                    await asyncio.sleep(0.1)

            keeper = asyncio.create_task(restarter())
            try:
                outcome = await asyncio.wait_for(client.run(job), 40)
            finally:
                keeper.cancel()
                await asyncio.gather(keeper, return_exceptions=True)
            # Taken out of the work queue (after being recorded), not left to rot; the
            # last acknowledgements may trail the final event by a few milliseconds.
            await wait_until_async(lambda: _no_messages(client, p.TASK_STREAM), 5,
                                   "the lost task to leave the stream")
            await wait_until_async(lambda: _no_messages(client, p.ADVISORY_STREAM), 5,
                                   "the advisory to be acknowledged")
            return outcome

    outcome = run(scenario())
    killed, fine = outcome.results
    assert outcome.state == "failed"
    assert (killed.state, killed.reason, killed.attempt) == ("failed", "worker lost 2 times", 2)
    assert fine.state == "succeeded"


@pytest.mark.slow
def test_cancel_drops_waiting_tasks_and_kills_running_ones(pod: Pod) -> None:
    """Cancelled through an interrupted ``run()``, as Ctrl-C in `cpb submit` does."""
    code = ("import os, sys, time; "
            f"open(os.path.join({str(pod.dir)!r}, 'pid-' + sys.argv[1]), 'w')"
            ".write(str(os.getpid())); time.sleep(60)")
    job = {"kind": "test", "tasks": [{"argv": [*python_task(code), f"t{i}"], "name": f"t{i}"}
                                     for i in range(6)]}

    async def scenario() -> tuple[p.StatusReply, tuple[p.TaskResult, ...], float]:
        async with await start(pod, "w1", slots=2) as client:
            job_id = new_job_id()
            running = asyncio.create_task(client.run(job, job_id=job_id))

            async def two_running() -> bool:
                return len(list(pod.dir.glob("pid-*"))) == 2 and (
                    await client.status(job_id)).counts.running == 2

            await wait_until_async(two_running, 15, "two tasks running")
            started = time.monotonic()
            running.cancel()  # what Ctrl-C does to `cpb submit`: run() cancels the job
            with pytest.raises(asyncio.CancelledError):
                await running
            async with client.follow(job_id, deadline_s=20) as watch:
                async for _ in watch:
                    pass
            took = time.monotonic() - started
            await wait_until_async(lambda: _no_messages(client, p.TASK_STREAM), 5,
                                   "the cancelled tasks to leave the stream")
            return await client.status(job_id), await client.results(job_id), took

    status, results, took = run(scenario())
    assert status.state == "cancelled" and status.final and took < 10
    assert status.counts == p.Counts(total=6, cancelled=6)
    pids = {f.name[4:]: int(f.read_text()) for f in pod.dir.glob("pid-*")}
    assert len(pids) == 2  # nothing else ever started
    by_reason = Counter(r.reason for r in results)
    assert by_reason == Counter({"cancelled before it started": 4, "cancelled while running": 2})
    for result in results:
        if result.name in pids:
            assert (result.reason, result.exit_code, result.worker) == (
                "cancelled while running", -9, "w1")
    wait_until(lambda: all(pid_gone(pid) for pid in pids.values()), 5, "the tasks to die")


@pytest.mark.slow
def test_a_stopping_worker_finishes_short_tasks_and_hands_long_ones_back(pod: Pod) -> None:
    log = pod.dir / "runs.txt"
    job = {"kind": "test", "tasks": [logged_task(log, "short", 0.5), logged_task(log, "long", 3)]}

    async def scenario() -> tuple[JobOutcome, int | None]:
        pod.start_majordomo(CP_ACK_WAIT="20")
        pod.start_worker("w1", slots=2, CP_WORKER_DRAIN_TIMEOUT="1")
        async with await pod.client() as client:
            await pod.wait_ready(client, "w1")
            running = asyncio.create_task(client.run(job))

            async def both_running() -> bool:
                return sum(w.running for w in await client.workers()) == 2

            await wait_until_async(both_running, 10, "both tasks running on w1")
            pod.start_worker("w2", slots=2)
            pod.kill("w1", signal.SIGTERM)
            outcome = await asyncio.wait_for(running, 30)
            return outcome, pod.procs["w1"].wait(5)

    outcome, exit_code = run(scenario())
    short, long = outcome.results
    assert exit_code == 0
    assert (short.state, short.worker, short.attempt) == ("succeeded", "w1", 1)
    # handed back (nak) at the drain timeout, not after the 20 s ack wait
    assert (long.state, long.worker, long.attempt) == ("succeeded", "w2", 2)
    assert runs_of(log) == Counter({"short": 1, "long": 1})


def test_the_client_gives_up_when_majordomo_never_comes_back(pod: Pod) -> None:
    job = {"kind": "test", "tasks": [{"argv": ["sleep", "30"]}]}

    async def scenario() -> tuple[str, float]:
        async with await start(pod, "w1") as client:
            client.patience_s = 2.0
            running = asyncio.create_task(client.run(job))
            await wait_until_async(_async(lambda: bool(list(pod.dir.glob("*.log")))), 5, "")
            await asyncio.sleep(0.5)
            pod.kill("majordomo")
            started = time.monotonic()
            with pytest.raises(LostContact) as lost:
                await asyncio.wait_for(running, 20)
            return str(lost.value), time.monotonic() - started

    message, took = run(scenario())
    assert "MajorDomo is not running" in message and took < 6


def _async(check: Any) -> Any:
    async def wrapped() -> bool:
        return bool(check())
    return wrapped
