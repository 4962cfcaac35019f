"""The worker: takes its kind's tasks from JetStream and runs each as a process.

    CP_WORKER_KIND=gcc CP_NATS_URL=nats://nats:4222 python -m cpb_runtime.worker

It binds to the durable pull consumer MajorDomo made for its kind (it needs
no right to create one), runs up to ``slots`` tasks at once, tells JetStream
it is still working on each (``in_progress``) and acknowledges a task only
after its result is safely in the result stream. A worker that dies holding a
task therefore loses nothing: JetStream gives the task to another worker after
the ack wait. SIGTERM: take no more tasks, let running ones finish for up to
CP_WORKER_DRAIN_TIMEOUT seconds, hand the rest back (nak) and exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.client import JetStreamContext
from nats.js.errors import NotFoundError

from cpb_runtime import protocol as p
from cpb_runtime.connect import close, connect
from cpb_runtime.errors import ConfigError, ProtocolError
from cpb_runtime.process import ProcessOutcome, TaskProcess, scrub_environment
from cpb_runtime.settings import NatsSettings, WorkerSettings, configure_logging

log = logging.getLogger("cpb_runtime.worker")

_FETCH_WAIT_S = 2.0  # a long poll: short, so a stopping worker leaves no pull request behind
_STOPPING = "worker stopping"
_REPORT_PATIENCE_S = 60.0  # then the task is handed back rather than held forever
_CANCEL_MEMORY_S = 3600.0
# TaskStarted is sent only for a task still running after this long: most short
# tasks then cost two messages fewer (worker -> server -> MajorDomo). MajorDomo also
# learns what runs from the heartbeats, and shows results every 0.25 s.
_STARTED_AFTER_S = 0.1


@dataclass
class _Active:
    task: p.TaskMessage
    attempt: int
    process: TaskProcess


class Worker:
    def __init__(self, nc: NATS, settings: WorkerSettings) -> None:
        self.nc = nc
        self.js: JetStreamContext = nc.jetstream()
        self.settings = settings
        self.active: dict[tuple[str, int], _Active] = {}
        self.cancelled_jobs: dict[str, float] = {}
        self.ready = False
        self.stopping = asyncio.Event()
        self.abandon = False
        self._slot_freed = asyncio.Event()
        self._runs: set[asyncio.Task[None]] = set()
        # Acknowledgements of stored results, kept for the fetch loop's next pull
        # request while it waits for a free slot: one write on the connection (with
        # TLS, one record) for both, instead of two.
        self._acks: list[Msg] = []
        self._acks_wait = False
        self._progress_every = 3.0

    # --- lifecycle -------------------------------------------------------------

    def request_stop(self) -> None:
        """First call: drain; second call: hand running tasks back now."""
        if self.stopping.is_set():
            self._abandon_running()
        else:
            log.info("stopping: no new tasks; %d running", len(self.active))
            self.stopping.set()

    async def run(self) -> None:
        kind = self.settings.kind
        cancel_sub = await self.nc.subscribe(p.cancel_subject(kind), cb=self._on_cancel)
        beat = asyncio.create_task(self._heartbeats())
        try:
            await self._fetch_loop()
            await self._drain()
        finally:
            beat.cancel()
            await asyncio.gather(beat, return_exceptions=True)
            with contextlib.suppress(Exception):
                await self._heartbeat()  # the last one says "stopping", nothing running
            with contextlib.suppress(Exception):
                await cancel_sub.unsubscribe()

    async def _drain(self) -> None:
        if self._runs:
            _done, pending = await asyncio.wait(self._runs, timeout=self.settings.drain_s)
            if pending:
                log.warning("drain timeout: handing %d running task(s) back", len(pending))
                self._abandon_running()
                await asyncio.wait(pending)

    def _abandon_running(self) -> None:
        self.abandon = True
        self.stopping.set()
        for active in self.active.values():
            active.process.kill(_STOPPING)

    # --- taking tasks ----------------------------------------------------------

    async def _bind(self) -> JetStreamContext.PullSubscription | None:
        consumer = p.task_consumer(self.settings.kind)
        waited = False
        while not self.stopping.is_set():
            try:
                info = await self.js.consumer_info(p.TASK_STREAM, consumer)
            except NotFoundError:
                if not waited:
                    log.info("waiting for MajorDomo to create consumer %s", consumer)
                    waited = True
            except Exception as exc:  # not connected yet, JetStream not ready...
                log.debug("consumer %s: %s", consumer, exc)
            else:
                ack_wait = float(info.config.ack_wait or 30.0)
                self._progress_every = max(0.2, ack_wait / 3)
                sub = await self.js.pull_subscribe_bind(durable=consumer, stream=p.TASK_STREAM)
                self.ready = True
                log.info("bound to consumer %s (ack wait %g s); %d slot(s)",
                         consumer, ack_wait, self.settings.slots)
                await self._heartbeat()
                return sub
            await self._sleep_unless_stopping(0.25)
        return None

    async def _fetch_loop(self) -> None:
        sub = await self._bind()
        stop = asyncio.ensure_future(self.stopping.wait())
        try:
            while sub is not None and not self.stopping.is_set():
                free = self.settings.slots - len(self._runs)  # _runs: counted at once
                if free <= 0:
                    self._slot_freed.clear()
                    slot = asyncio.ensure_future(self._slot_freed.wait())
                    self._acks_wait = True
                    try:
                        await asyncio.wait({slot, stop}, return_when=asyncio.FIRST_COMPLETED)
                    finally:
                        self._acks_wait = False
                        slot.cancel()
                    continue
                fetch = asyncio.ensure_future(sub.fetch(free, timeout=_FETCH_WAIT_S))
                # Scheduled before the acks are published, so nats-py flushes the
                # fetch's pull request with them.
                await self._send_acks()
                await asyncio.wait({fetch, stop}, return_when=asyncio.FIRST_COMPLETED)
                if not fetch.done():
                    fetch.cancel()
                try:
                    msgs = await fetch
                except (asyncio.CancelledError, asyncio.TimeoutError):
                    continue
                except Exception as exc:  # disconnected, consumer deleted...
                    log.warning("fetch: %s: %s", type(exc).__name__, exc)
                    self.ready = False
                    with contextlib.suppress(Exception):
                        await sub.unsubscribe()
                    await self._sleep_unless_stopping(1.0)
                    sub = await self._bind()
                    continue
                for msg in msgs:
                    run = asyncio.create_task(self._run_one(msg))
                    self._runs.add(run)
                    run.add_done_callback(self._run_done)
        finally:
            stop.cancel()
            self._acks_wait = False
            await self._send_acks()
        if sub is not None:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def _send_acks(self) -> None:
        acks, self._acks = self._acks, []
        for msg in acks:
            try:
                await msg.ack()
            except Exception as exc:  # the task comes back after the ack wait: a duplicate
                log.warning("acknowledging a task: %s: %s", type(exc).__name__, exc)

    def _run_done(self, run: asyncio.Task[None]) -> None:
        self._runs.discard(run)
        self._slot_freed.set()
        if not run.cancelled() and run.exception() is not None:
            log.error("task runner failed", exc_info=run.exception())

    async def _sleep_unless_stopping(self, seconds: float) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), seconds)

    # --- running one task ----------------------------------------------------------

    async def _run_one(self, msg: Msg) -> None:
        attempt = msg.metadata.num_delivered
        try:
            task = p.decode(p.TaskMessage, msg.data)
        except ProtocolError as exc:
            log.error("dropping a task message that cannot be read: %s", exc)
            await msg.term()
            return
        key = (task.job_id, task.index)
        if key in self.active:  # a redelivery of what we run: our in_progress got lost
            await msg.in_progress()
            return
        # CP_* settings were scrubbed from os.environ at start: tasks inherit the rest.
        env = {**os.environ, **task.env} if task.env else None
        process = TaskProcess(task.argv, cwd=task.workdir, env=env, timeout=task.timeout)
        if task.job_id in self.cancelled_jobs:
            process.kill("cancelled before it started")
        self.active[key] = _Active(task, attempt, process)
        keep_alive = asyncio.create_task(self._keep_alive(msg, task, attempt))
        try:
            outcome = await process.run()
            if outcome.reason == _STOPPING:
                await msg.nak()  # handed back: another worker gets it now
                return
            result = self._result(task, attempt, outcome)
            if not await self._report(result):
                await msg.nak()
            elif self._acks_wait:  # this run's end frees the slot the fetch loop waits for
                self._acks.append(msg)
            else:
                await msg.ack()
        finally:
            keep_alive.cancel()
            await asyncio.gather(keep_alive, return_exceptions=True)
            del self.active[key]
        log.log(logging.INFO if result.succeeded else logging.WARNING,
                "%s %s/%s attempt %d: %s%s", result.state, task.job_id, task.name, attempt,
                f"exit {result.exit_code}" if result.exit_code is not None else "no exit code",
                f" ({result.reason})" if result.reason else "")

    async def _keep_alive(self, msg: Msg, task: p.TaskMessage, attempt: int) -> None:
        """While the task runs: TaskStarted once it has run _STARTED_AFTER_S, then
        ``in_progress`` every ack wait / 3."""
        await asyncio.sleep(_STARTED_AFTER_S)
        with contextlib.suppress(Exception):
            await self.nc.publish(p.started_subject(task.kind, task.job_id), p.encode(
                p.TaskStarted(task.job_id, task.index, self.settings.name, attempt)))
        await asyncio.sleep(max(0.0, self._progress_every - _STARTED_AFTER_S))
        while True:
            with contextlib.suppress(Exception):
                await msg.in_progress()
            await asyncio.sleep(self._progress_every)

    def _result(self, task: p.TaskMessage, attempt: int, outcome: ProcessOutcome) -> p.TaskResult:
        if outcome.succeeded:
            state: p.TaskState = "succeeded"
        elif outcome.reason.startswith("cancelled"):
            state = "cancelled"
        else:
            state = "failed"
        return p.fit_result(p.TaskResult(
            job_id=task.job_id, index=task.index, name=task.name, state=state,
            exit_code=outcome.exit_code, duration_s=round(outcome.duration_s, 6),
            attempt=attempt, worker=self.settings.name,
            stdout_tail=p.tail_text(outcome.stdout_tail),
            stderr_tail=p.tail_text(outcome.stderr_tail), reason=outcome.reason))

    async def _report(self, result: p.TaskResult) -> bool:
        """Put the result in the result stream; True once JetStream has it."""
        subject = p.result_subject(self.settings.kind, result.job_id)
        # The same attempt reported twice (a lost publish ack) is stored once.
        headers = {"Nats-Msg-Id": f"{result.job_id}.{result.index}.{result.attempt}"}
        deadline = time.monotonic() + _REPORT_PATIENCE_S
        delay = 0.2
        while True:
            try:
                await self.js.publish(subject, p.encode(result), headers=headers, timeout=5)
                return True
            except Exception as exc:
                if time.monotonic() > deadline:
                    log.error("could not report %s/%s for %g s (%s): handing it back",
                              result.job_id, result.name, _REPORT_PATIENCE_S, exc)
                    return False
                log.warning("reporting %s/%s: %s: %s; retrying", result.job_id, result.name,
                            type(exc).__name__, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    # --- cancellation and heartbeats -------------------------------------------------

    async def _on_cancel(self, msg: Msg) -> None:
        try:
            notice = p.decode(p.CancelNotice, msg.data)
        except ProtocolError as exc:
            log.error("bad cancel notice: %s", exc)
            return
        now = time.monotonic()
        self.cancelled_jobs[notice.job_id] = now
        for job_id, seen in list(self.cancelled_jobs.items()):
            if now - seen > _CANCEL_MEMORY_S:
                del self.cancelled_jobs[job_id]
        for (job_id, _index), active in self.active.items():
            if job_id == notice.job_id:
                active.process.kill("cancelled while running")

    async def _heartbeats(self) -> None:
        while True:
            with contextlib.suppress(Exception):
                await self._heartbeat()
            await asyncio.sleep(self.settings.heartbeat_s)

    async def _heartbeat(self) -> None:
        s = self.settings
        beat = p.Heartbeat(
            worker=s.name, kind=s.kind, slots=s.slots, interval_s=s.heartbeat_s,
            running=tuple(p.RunningTask(a.task.job_id, a.task.index, a.attempt)
                          for a in self.active.values()),
            ready=self.ready and not self.stopping.is_set(), stopping=self.stopping.is_set())
        await self.nc.publish(p.heartbeat_subject(s.kind, s.name), p.encode(beat))


async def serve(settings: WorkerSettings, nats_settings: NatsSettings | None = None) -> None:
    nc = await connect(nats_settings, name=f"worker {settings.name}", long_lived=True,
                       inbox=p.worker_inbox(settings.kind))
    worker = Worker(nc, settings)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, worker.request_stop)
    log.info("worker %s of kind %s connected to %s", settings.name, settings.kind,
             nc.connected_url.netloc if nc.connected_url else "?")
    try:
        await worker.run()
    finally:
        await close(nc)
    log.info("worker %s stopped", settings.name)


def main(argv: Sequence[str] | None = None, default_kind: str | None = None) -> int:
    """Entry point; ``default_kind`` is what a caller (an image's start script) may pass."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    try:
        configure_logging("worker")
        settings = WorkerSettings.from_env(default_kind=args[0] if args else default_kind)
        nats_settings = NatsSettings.from_env()
        nats_settings.tls_context()  # bad TLS files: say so now, not at each reconnection
    except ConfigError as exc:
        print(f"cpb_runtime.worker: {exc}", file=sys.stderr)
        return 2
    scrub_environment()  # the NATS URL and key files are this worker's, not its tasks'
    asyncio.run(serve(settings, nats_settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
