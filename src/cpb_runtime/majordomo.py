"""MajorDomo: owns jobs. Intake, tasks into JetStream, results, status, cancel, workers.

    CP_NATS_URL=nats://nats:4222 python -m cpb_runtime.majordomo

It alone creates the JetStream objects (protocol.py names them): the task
work queue with one durable pull consumer per worker kind, the result work
queue it consumes durably, a stream keeping the server's max-deliveries
advisories, and the CP_JOBS key-value bucket holding every job's record,
spec and results. Killed and restarted mid-job it loses nothing: results and
advisories wait in their streams, jobs are reloaded from the bucket.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import api
from nats.js.client import JetStreamContext
from nats.js.errors import APIError, BucketNotFoundError, KeyNotFoundError, NotFoundError
from nats.js.kv import KeyValue

from cpb_runtime import protocol as p
from cpb_runtime.connect import close, connect
from cpb_runtime.errors import ConfigError, JobSpecError, ProtocolError
from cpb_runtime.jobs import Job, task_message
from cpb_runtime.settings import MajorDomoSettings, NatsSettings, configure_logging

log = logging.getLogger("cpb_runtime.majordomo")

_PUBLISH_CHUNK = 256  # tasks published (or deleted) concurrently
_RESULTS_BATCH = 256
# After a fetch that did not fill a batch, results gather this long before the next:
# stored, acknowledged and fetched in batches, a result costs far fewer writes and
# reads on the connection (each a TLS record and a syscall); the submitter hears of
# results every _HOUSEKEEPING_S anyway.
_INTAKE_WINDOW_S = 0.05
_RESULTS_PAGE_BYTES = 512 * 1024
_HOUSEKEEPING_S = 0.25  # also the longest a stored result waits to be sent to the submitter
_EVENT_BYTES = 256 * 1024  # results in one event, before it is sent early
_KEEP_FINISHED_S = 600.0  # finished jobs stay in memory this long, then live in the bucket only
_NO_SUCH_MESSAGE = (10037, 10057)  # JetStream: "no message found", "message delete failed"
_STREAM_EXISTS = 10058  # "stream name already in use with a different configuration"


@dataclass
class _Seen:
    beat: p.Heartbeat
    at: float  # monotonic

    def alive(self, now: float) -> bool:
        return now - self.at <= 3 * self.beat.interval_s + 0.5


class MajorDomo:
    def __init__(self, nc: NATS, settings: MajorDomoSettings) -> None:
        self.nc = nc
        self.js: JetStreamContext = nc.jetstream()
        self.settings = settings
        self.kv: KeyValue | None = None
        self.jobs: dict[str, Job] = {}
        self.workers: dict[str, _Seen] = {}
        self.consumers: set[str] = set()  # kinds whose consumer is known to exist
        self.started_at = time.monotonic()
        self._loops: list[asyncio.Task[None]] = []
        self._subs: list[Subscription] = []
        self._submitting: dict[str, asyncio.Lock] = {}

    # --- start and stop ----------------------------------------------------------

    async def start(self) -> None:
        await self._ensure_jetstream()
        await self._load_jobs()
        handlers: list[tuple[str, Callable[[Msg], Awaitable[None]]]] = [
            (p.SUBMIT, self._on_submit), (p.STATUS, self._on_status),
            (p.RESULTS, self._on_results), (p.CANCEL, self._on_cancel),
            (p.WORKERS, self._on_workers), (p.HEARTBEAT_ALL, self._on_heartbeat),
            (p.STARTED_ALL, self._on_started),
        ]
        for subject, handler in handlers:
            self._subs.append(await self.nc.subscribe(subject, cb=self._guard(handler)))
        self.started_at = time.monotonic()
        self._loops = [
            asyncio.create_task(self._consume(p.RESULT_STREAM, p.RESULT_CONSUMER,
                                              self._handle_result)),
            asyncio.create_task(self._consume(p.ADVISORY_STREAM, p.ADVISORY_CONSUMER,
                                              self._handle_advisory)),
            asyncio.create_task(self._housekeeping()),
        ]
        for job in list(self.jobs.values()):
            if job.record.state == "submitting":
                self._loops.append(asyncio.create_task(self._resume_submission(job)))
        for job in list(self.jobs.values()):
            await self._maybe_finish(job)  # all results were in when the last one stopped
        log.info("ready: %d unfinished job(s) reloaded", len(self.jobs))

    async def stop(self) -> None:
        for loop in self._loops:
            loop.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        for sub in self._subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    def _guard(self, handler: Callable[[Msg], Awaitable[None]]) -> Callable[[Msg], Awaitable[None]]:
        async def guarded(msg: Msg) -> None:
            try:
                await handler(msg)
            except Exception:
                log.exception("handling a message on %s", msg.subject)
        return guarded

    async def _ensure_jetstream(self) -> None:
        """Streams, the bucket and MajorDomo's own consumers; idempotent."""
        delay = 0.5
        while True:
            try:
                await self._make_streams()
                return
            except Exception as exc:  # JetStream not enabled or not ready yet
                log.warning("setting up JetStream: %s: %s (retrying)", type(exc).__name__, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _stream(self, config: api.StreamConfig) -> None:
        try:
            await self.js.add_stream(config)
        except APIError as exc:
            if exc.err_code != _STREAM_EXISTS:
                raise
            # Made by an older MajorDomo with other settings: bring it up to date.
            await self.js.update_stream(config)
            log.info("stream %s updated", config.name)

    async def _make_streams(self) -> None:
        wq, file = api.RetentionPolicy.WORK_QUEUE, api.StorageType.FILE
        await self._stream(api.StreamConfig(
            name=p.TASK_STREAM, subjects=[p.TASK_STREAM_SUBJECTS], retention=wq, storage=file,
            duplicate_window=600.0))
        await self._stream(api.StreamConfig(
            name=p.RESULT_STREAM, subjects=[p.RESULT_STREAM_SUBJECTS], retention=wq,
            storage=file, duplicate_window=120.0))
        await self._stream(api.StreamConfig(
            name=p.ADVISORY_STREAM, subjects=[p.MAX_DELIVERIES_ADVISORIES], retention=wq,
            storage=file))
        for stream, durable in ((p.RESULT_STREAM, p.RESULT_CONSUMER),
                                (p.ADVISORY_STREAM, p.ADVISORY_CONSUMER)):
            await self.js.add_consumer(stream, api.ConsumerConfig(
                durable_name=durable, ack_policy=api.AckPolicy.EXPLICIT, ack_wait=30.0,
                max_deliver=-1, max_ack_pending=10_000))
        try:
            self.kv = await self.js.key_value(p.JOB_BUCKET)
        except BucketNotFoundError:
            self.kv = await self.js.create_key_value(
                bucket=p.JOB_BUCKET, history=1, storage=file, ttl=self.settings.job_ttl_s)
        for info in await self.js.consumers_info(p.TASK_STREAM):
            durable = info.config.durable_name or ""
            if durable.startswith("tasks-"):  # made before: apply today's ack wait etc.
                await self.ensure_consumer(durable.removeprefix("tasks-"), update=True)

    async def ensure_consumer(self, kind: str, *, update: bool = False) -> None:
        if kind in self.consumers and not update:
            return
        config = api.ConsumerConfig(
            durable_name=p.task_consumer(kind), filter_subject=p.task_filter(kind),
            ack_policy=api.AckPolicy.EXPLICIT, ack_wait=self.settings.ack_wait_s,
            max_deliver=self.settings.max_deliver, max_ack_pending=10_000,
            deliver_policy=api.DeliverPolicy.ALL)
        try:
            # Creates it, or updates one made earlier (ack wait, max deliveries).
            await self.js.add_consumer(p.TASK_STREAM, config)
        except APIError as exc:
            # A change the server does not allow on an existing consumer: keep it rather
            # than lose its deliveries.
            await self.js.consumer_info(p.TASK_STREAM, p.task_consumer(kind))
            log.warning("consumer %s kept with its old settings: %s", p.task_consumer(kind), exc)
        self.consumers.add(kind)
        log.info("consumer %s ready", p.task_consumer(kind))

    # --- the bucket ------------------------------------------------------------------

    @property
    def _kv(self) -> KeyValue:
        assert self.kv is not None, "start() first"
        return self.kv

    async def _put_record(self, job: Job) -> None:
        await self._kv.put(p.job_key(job.job_id), p.encode(job.record))

    async def _kv_values(self, pattern: str) -> dict[str, bytes]:
        found: dict[str, bytes] = {}
        watcher = await self._kv.watch(pattern, inactive_threshold=30.0)
        try:
            while (entry := await watcher.updates(timeout=30.0)) is not None:  # type: ignore[no-untyped-call]
                if entry.operation is None and entry.value is not None:
                    found[entry.key] = entry.value
        finally:
            await watcher.stop()  # type: ignore[no-untyped-call]
        return found

    async def _load_jobs(self) -> None:
        for raw in (await self._kv_values("job.*")).values():
            try:
                record = p.decode(p.JobRecord, raw)
            except ProtocolError as exc:
                log.error("unreadable job record: %s", exc)
                continue
            if record.state not in p.FINAL_JOB_STATES:
                job = await self._load_job(record)
                if job is not None:
                    self.jobs[job.job_id] = job

    async def _load_job(self, record: p.JobRecord) -> Job | None:
        try:
            entry = await self._kv.get(p.spec_key(record.job_id))
            spec = p.decode(p.SubmitRequest, entry.value or b"").job
        except (KeyNotFoundError, ProtocolError, JobSpecError) as exc:
            log.error("job %s: its spec cannot be read (%s); dropped", record.job_id, exc)
            return None
        job = Job(record=record, spec=spec)
        for raw in (await self._kv_values(f"res.{record.job_id}.*")).values():
            with contextlib.suppress(ProtocolError):
                job.accept(p.decode(p.TaskResult, raw))
        if record.cancelled and not job.final:
            job.cancel_waiting(time.monotonic(), self.settings.cancel_grace_s)
        job.dirty = False
        return job

    async def _job(self, job_id: str) -> Job | None:
        """A job from memory, else from the bucket (a finished one, asked about later)."""
        if job_id in self.jobs:
            return self.jobs[job_id]
        if not p.JOB_ID_RE.match(job_id):
            return None
        try:
            entry = await self._kv.get(p.job_key(job_id))
            record = p.decode(p.JobRecord, entry.value or b"")
        except (KeyNotFoundError, ProtocolError):
            return None
        job = self.jobs.get(job_id) or await self._load_job(record)
        if job is not None:
            if job.final:
                job.finished_at = time.monotonic()
            self.jobs[job_id] = job
        return job

    # --- intake -------------------------------------------------------------------

    async def _reply(self, msg: Msg, message: object) -> None:
        if msg.reply:
            await msg.respond(p.encode(message))

    async def _on_submit(self, msg: Msg) -> None:
        try:
            request = p.decode(p.SubmitRequest, msg.data)
        except JobSpecError as exc:
            await self._reply(msg, p.SubmitReply(False, _job_id_of(msg.data),
                                                 error="invalid job", errors=exc.errors))
            return
        except ProtocolError as exc:
            await self._reply(msg, p.SubmitReply(False, _job_id_of(msg.data), error=str(exc)))
            return
        job_id = request.job_id
        if not p.JOB_ID_RE.match(job_id):
            await self._reply(msg, p.SubmitReply(False, job_id, error="invalid job id"))
            return
        lock = self._submitting.setdefault(job_id, asyncio.Lock())
        async with lock:
            reply = await self._accept(request, msg.data)
        self._submitting.pop(job_id, None)
        await self._reply(msg, reply)

    async def _accept(self, request: p.SubmitRequest, raw: bytes) -> p.SubmitReply:
        job_id, spec = request.job_id, request.job
        existing = await self._job(job_id)
        if existing is not None:  # a retried submission: idempotent
            if existing.record.state == "submitting":
                await self._publish_tasks(existing)
            return p.SubmitReply(True, job_id)
        refusal = await self._refusal(spec.kind)
        if refusal:
            log.info("refused job %s: %s", job_id, refusal)
            return p.SubmitReply(False, job_id, error=refusal)
        try:
            await self.ensure_consumer(spec.kind)
            record = p.JobRecord(job_id=job_id, kind=spec.kind, state="submitting",
                                 total=len(spec.tasks), created=time.time(),
                                 submitter=request.submitter)
            job = Job(record=record, spec=spec)
            await self._kv.put(p.spec_key(job_id), raw)
            await self._put_record(job)
            self.jobs[job_id] = job
            await self._publish_tasks(job)
            await self._maybe_finish(job)  # tiny tasks may all be done already
        except Exception as exc:
            log.exception("job %s: could not accept", job_id)
            if job_id in self.jobs:  # half published: take back what went out
                half = self.jobs[job_id]
                half.record = replace(half.record, state="running")
                with contextlib.suppress(Exception):
                    await self._cancel(half)
            return p.SubmitReply(False, job_id, error=f"could not accept the job: {exc}")
        log.info("accepted job %s: %d task(s) of kind %s", job_id, job.record.total, spec.kind)
        self._event(job)
        return p.SubmitReply(True, job_id)

    async def _publish_tasks(self, job: Job) -> None:
        """Publish every task; a repeat (after a crash) is deduplicated by message id."""
        seqs: list[int] = []
        subject = p.task_subject(job.spec.kind, job.job_id)
        for start in range(0, job.record.total, _PUBLISH_CHUNK):
            acks = await asyncio.gather(*(
                self.js.publish(subject, p.encode(task_message(job.spec, job.job_id, i)),
                                headers={"Nats-Msg-Id": f"{job.job_id}.{i}"})
                for i in range(start, min(start + _PUBLISH_CHUNK, job.record.total))),
                return_exceptions=True)
            seqs.extend(ack.seq if not isinstance(ack, BaseException) else 0 for ack in acks)
            # Known in memory as they come, so that a failure can take them back.
            job.record = replace(job.record, seqs=tuple(seqs))
            failed = [ack for ack in acks if isinstance(ack, BaseException)]
            if failed:
                raise failed[0]
        job.record = replace(job.record, state="running", seqs=tuple(seqs))
        await self._put_record(job)

    async def _resume_submission(self, job: Job) -> None:
        try:
            await self.ensure_consumer(job.spec.kind)
            await self._publish_tasks(job)
            await self._maybe_finish(job)
            log.info("job %s: submission resumed after a restart", job.job_id)
        except Exception:
            log.exception("job %s: could not resume its submission", job.job_id)

    async def _refusal(self, kind: str) -> str:
        """Why a job of this kind cannot be taken now; empty when it can."""
        grace_end = self.started_at + self.settings.startup_grace_s
        while not self.live_workers(kind) and time.monotonic() < grace_end:
            await asyncio.sleep(0.1)  # just started: heartbeats may not have come in yet
        if self.live_workers(kind):
            return ""
        kinds = sorted({s.beat.kind for s in self.live_workers()})
        others = f" (live kinds: {', '.join(kinds)})" if kinds else " (no worker is alive)"
        return f"no live worker of kind {kind!r}{others}"

    def live_workers(self, kind: str | None = None) -> list[_Seen]:
        now = time.monotonic()
        return [s for s in self.workers.values()
                if s.alive(now) and not s.beat.stopping and (kind is None or s.beat.kind == kind)]

    # --- queries ----------------------------------------------------------------

    async def _query(self, msg: Msg) -> tuple[p.JobQuery | None, Job | None]:
        try:
            query = p.decode(p.JobQuery, msg.data)
        except ProtocolError as exc:
            await self._reply(msg, p.StatusReply(False, "", error=str(exc)))
            return None, None
        job = await self._job(query.job_id)
        return query, job

    async def _on_status(self, msg: Msg) -> None:
        query, job = await self._query(msg)
        if query is None:
            return
        if job is None:
            await self._reply(msg, p.StatusReply(False, query.job_id, error="unknown job"))
            return
        await self._reply(msg, self._status(job))

    def _status(self, job: Job) -> p.StatusReply:
        return p.StatusReply(True, job.job_id, kind=job.spec.kind, state=job.record.state,
                             final=job.final, counts=job.counts())

    async def _on_results(self, msg: Msg) -> None:
        query, job = await self._query(msg)
        if query is None:
            return
        if job is None:
            await self._reply(msg, p.ResultsReply(False, query.job_id, error="unknown job"))
            return
        page: list[p.TaskResult] = []
        size, index = 0, max(query.offset, 0)
        while index < job.record.total:
            result = job.result_or_state(index)
            size += len(p.encode(result))
            if page and size > _RESULTS_PAGE_BYTES:
                break
            page.append(result)
            index += 1
        next_offset = index if index < job.record.total else None
        await self._reply(msg, p.ResultsReply(True, job.job_id, results=tuple(page),
                                              next_offset=next_offset))

    async def _on_workers(self, msg: Msg) -> None:
        try:
            query = p.decode(p.WorkersQuery, msg.data) if msg.data else p.WorkersQuery()
        except ProtocolError:
            query = p.WorkersQuery()
        now = time.monotonic()
        infos = tuple(
            p.WorkerInfo(name=s.beat.worker, kind=s.beat.kind, slots=s.beat.slots,
                         running=len(s.beat.running), ready=s.beat.ready,
                         stopping=s.beat.stopping, last_seen_s=round(now - s.at, 3))
            for s in sorted(self.workers.values(), key=lambda s: (s.beat.kind, s.beat.worker))
            if s.alive(now) and (not query.kind or s.beat.kind == query.kind))
        await self._reply(msg, p.WorkersReply(infos))

    # --- cancellation ----------------------------------------------------------------

    async def _on_cancel(self, msg: Msg) -> None:
        query, job = await self._query(msg)
        if query is None:
            return
        if job is None:
            await self._reply(msg, p.CancelReply(False, query.job_id, error="unknown job"))
            return
        lock = self._submitting.get(job.job_id)
        if lock is not None:
            async with lock:  # let the submission finish: its tasks need their sequences
                pass
        if not job.final and not job.record.cancelled:
            await self._cancel(job)
        await self._reply(msg, p.CancelReply(True, job.job_id, state=job.record.state))

    async def _cancel(self, job: Job) -> None:
        job.record = replace(job.record, cancelled=True)
        await self._put_record(job)
        # Workers first, so none starts a task of this job any more...
        await self.nc.publish(p.cancel_subject(job.spec.kind),
                              p.encode(p.CancelNotice(job.job_id)))
        unfinished = job.unfinished()
        dropped = job.cancel_waiting(time.monotonic(), self.settings.cancel_grace_s)
        # ...then the stream: tasks not taken are deleted, and so are taken ones,
        # so that a worker that dies now does not bring them back.
        try:
            await self._delete_tasks(job, unfinished)
        except Exception as exc:  # those left are dropped by the workers, who know
            log.warning("job %s: some cancelled tasks stay in the stream: %s", job.job_id, exc)
        log.info("job %s cancelled: %d task(s) dropped, %d running told to stop",
                 job.job_id, len(dropped), len(unfinished) - len(dropped))
        await self._maybe_finish(job)

    async def _delete_tasks(self, job: Job, indexes: Sequence[int]) -> None:
        seqs = [job.record.seqs[i] for i in indexes
                if i < len(job.record.seqs) and job.record.seqs[i]]
        for start in range(0, len(seqs), _PUBLISH_CHUNK):
            await asyncio.gather(*(self._delete_task(seq)
                                   for seq in seqs[start:start + _PUBLISH_CHUNK]))

    async def _delete_task(self, seq: int) -> None:
        # Gone already (done, or deleted before a restart) is fine. Never purge by
        # subject here: on nats-server 2.9 that makes the consumer skip live tasks.
        try:
            await self.js.delete_msg(p.TASK_STREAM, seq)
        except APIError as exc:
            if exc.err_code not in _NO_SUCH_MESSAGE:
                raise

    # --- workers ----------------------------------------------------------------------

    async def _on_heartbeat(self, msg: Msg) -> None:
        beat = p.decode(p.Heartbeat, msg.data)
        now = time.monotonic()
        previous = self.workers.get(beat.worker)
        self.workers[beat.worker] = _Seen(beat, now)
        if previous is None or not previous.alive(now):
            log.info("worker %s of kind %s is alive (%d slot(s))", beat.worker, beat.kind,
                     beat.slots)
        if beat.kind not in self.consumers and not beat.stopping:
            await self.ensure_consumer(beat.kind)
        listed = {(r.job_id, r.index) for r in beat.running}
        renotify: set[str] = set()
        for running in beat.running:
            job = self.jobs.get(running.job_id)
            if job is None:
                continue
            if job.record.cancelled:
                renotify.add(job.job_id)
            job.mark_running(running.index, beat.worker, running.attempt)
        # What this worker ran before but no longer lists went back to the stream
        # (handed back) or is about to report.
        for job in self.jobs.values():
            for index, run in list(job.running.items()):
                if (run.worker == beat.worker and (job.job_id, index) not in listed
                        and now - run.since > beat.interval_s):
                    job.mark_lost(index)
        for job_id in renotify:  # it missed the notice (reconnecting, restarted)
            await self.nc.publish(p.cancel_subject(beat.kind), p.encode(p.CancelNotice(job_id)))

    async def _on_started(self, msg: Msg) -> None:
        started = p.decode(p.TaskStarted, msg.data)
        job = self.jobs.get(started.job_id)
        if job is not None:
            job.mark_running(started.index, started.worker, started.attempt)

    # --- results and lost tasks ------------------------------------------------------

    async def _consume(self, stream: str, durable: str,
                       handle: Callable[[Msg], Awaitable[None]]) -> None:
        sub = await self.js.pull_subscribe_bind(durable=durable, stream=stream)
        while True:
            try:
                msgs = await sub.fetch(_RESULTS_BATCH, timeout=1.0)
            except asyncio.TimeoutError:  # nothing to fetch
                continue
            except Exception as exc:
                log.warning("reading %s: %s: %s", stream, type(exc).__name__, exc)
                await asyncio.sleep(1.0)
                continue
            outcomes = await asyncio.gather(*(handle(m) for m in msgs), return_exceptions=True)
            for outcome in outcomes:
                if isinstance(outcome, Exception):
                    log.error("handling a message of %s", stream, exc_info=outcome)
            if len(msgs) < _RESULTS_BATCH:
                await asyncio.sleep(_INTAKE_WINDOW_S)

    async def _record(self, job: Job, result: p.TaskResult) -> bool:
        """Store a terminal result and queue it for the submitter; False if it is a
        duplicate. Raises if it could not be stored."""
        if not job.accept(result):
            return False
        data = p.encode(job.results[result.index])
        try:
            await self._kv.put(p.result_key(job.job_id, result.index), data)
        except Exception:
            job.forget(result.index)
            raise
        if job.outbox and job.outbox_bytes + len(data) > _EVENT_BYTES:
            self._event(job)  # keep each event well under NATS's message size
        job.outbox.append(job.results[result.index])
        job.outbox_bytes += len(data)
        return True

    async def _handle_result(self, msg: Msg) -> None:
        try:
            result = p.decode(p.TaskResult, msg.data)
        except ProtocolError as exc:
            log.error("dropping an unreadable result: %s", exc)
            await msg.ack()
            return
        job = await self._job(result.job_id)
        if job is None:
            log.warning("result for unknown job %s dropped", result.job_id)
        elif await self._record(job, result):
            await self._maybe_finish(job)
        else:
            log.info("duplicate result of %s/%s (attempt %d by %s) ignored", result.job_id,
                     result.index, result.attempt, result.worker)
        await msg.ack()  # only now: a crash before this brings the result back

    async def _handle_advisory(self, msg: Msg) -> None:
        """A task was delivered max_deliver times and never acknowledged: its workers
        died. JetStream keeps it in the stream; report it failed, then delete it."""
        try:
            advisory = p.decode_advisory(msg.data)
        except ProtocolError as exc:
            log.error("dropping an unreadable advisory: %s", exc)
            await msg.ack()
            return
        try:
            stored = await self.js.get_msg(p.TASK_STREAM, advisory.stream_seq)
        except APIError as exc:
            if exc.err_code not in _NO_SUCH_MESSAGE and not isinstance(exc, NotFoundError):
                raise
            await msg.ack()  # acknowledged at the last moment, or cancelled: nothing lost
            return
        try:
            task = p.decode(p.TaskMessage, stored.data or b"")
        except ProtocolError as exc:
            log.error("lost task %d cannot be read: %s", advisory.stream_seq, exc)
        else:
            job = await self._job(task.job_id)
            if job is not None and task.index not in job.results:
                lost = job.synthetic(task.index, "failed",
                                     f"worker lost {advisory.deliveries} times",
                                     attempt=advisory.deliveries)
                if await self._record(job, lost):
                    log.warning("job %s task %s: %s", job.job_id, lost.name, lost.reason)
                    await self._maybe_finish(job)
        await self._delete_task(advisory.stream_seq)
        await msg.ack()

    # --- the end of a job, events ------------------------------------------------------

    async def _maybe_finish(self, job: Job) -> None:
        if job.final or not job.complete() or job.record.state == "submitting":
            return
        job.record = replace(job.record, state=job.final_state(), finished=time.time())
        job.finished_at = time.monotonic()
        await self._put_record(job)
        counts = job.counts()
        log.info("job %s %s: %d succeeded, %d failed, %d cancelled", job.job_id,
                 job.record.state, counts.succeeded, counts.failed, counts.cancelled)
        self._event(job, final=True)

    def _event(self, job: Job, *, final: bool = False) -> None:
        """Counts, and the results not sent yet, to the submitter (core NATS: a lost
        event costs nothing, the client also polls the status)."""
        event = p.JobEvent(job_id=job.job_id, type="final" if final else "progress",
                           state=job.record.state, counts=job.counts(),
                           results=tuple(job.outbox))
        job.dirty, job.outbox, job.outbox_bytes = False, [], 0
        task = asyncio.ensure_future(
            self.nc.publish(p.job_events_subject(job.job_id), p.encode(event)))
        task.add_done_callback(lambda t: t.cancelled() or t.exception())

    async def _housekeeping(self) -> None:
        while True:
            await asyncio.sleep(_HOUSEKEEPING_S)
            try:
                await self._tidy(time.monotonic())
            except Exception:
                log.exception("housekeeping")

    async def _tidy(self, now: float) -> None:
        for name, seen in list(self.workers.items()):
            if not seen.alive(now):
                log.warning("worker %s of kind %s is gone (no heartbeat for %.1f s)", name,
                            seen.beat.kind, now - seen.at)
                del self.workers[name]
                for job in self.jobs.values():
                    for index, run in list(job.running.items()):
                        if run.worker == name:
                            job.mark_lost(index)
        for job_id, job in list(self.jobs.items()):
            if job.expire_cancel(now):
                await self._maybe_finish(job)
            if (job.dirty or job.outbox) and not job.final:
                self._event(job)
            if job.final and job.finished_at is not None and (
                    now - job.finished_at > _KEEP_FINISHED_S):
                del self.jobs[job_id]


def _job_id_of(data: bytes) -> str:
    try:
        value = json.loads(data).get("job_id", "")
    except (ValueError, AttributeError):
        return ""
    return value if isinstance(value, str) else ""


async def serve(settings: MajorDomoSettings, nats_settings: NatsSettings | None = None) -> None:
    nc = await connect(nats_settings, name="majordomo", long_lived=True,
                       inbox=p.MAJORDOMO_INBOX)
    md = MajorDomo(nc, settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await md.start()
        await stop.wait()
    finally:
        await md.stop()
        await close(nc)
    log.info("stopped")


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    try:
        configure_logging("majordomo")
        settings = MajorDomoSettings.from_env()
        nats_settings = NatsSettings.from_env()
        nats_settings.tls_context()
    except ConfigError as exc:
        print(f"cpb_runtime.majordomo: {exc}", file=sys.stderr)
        return 2
    asyncio.run(serve(settings, nats_settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
