"""The submitter's side: what `cpb submit` calls.

    async with await Client.connect() as client:
        outcome = await client.run(parse_job(data), on_progress=show)

``run`` submits, follows progress (events from MajorDomo, and status polls in
case events are lost), and returns every task's result. It never waits
forever: when MajorDomo stops answering (a restart) it keeps asking, and
gives up with LostContact after ``patience_s`` seconds without an answer;
``deadline_s`` bounds the whole job. If the caller is cancelled (Ctrl-C under
asyncio.run), the job is cancelled too.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import secrets
import socket
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import ConnectionClosedError, NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError

from cpb_runtime import protocol as p
from cpb_runtime.connect import close, connect
from cpb_runtime.errors import (
    FieldError,
    JobRefused,
    JobSpecError,
    LostContact,
    ProtocolError,
    UnknownJob,
    Unreachable,
)
from cpb_runtime.protocol import JobSpec, TaskResult, parse_job, validate_job
from cpb_runtime.settings import NatsSettings

__all__ = ["Client", "JobOutcome", "Progress", "new_job_id", "parse_job", "validate_job"]

R = TypeVar("R")
# (asyncio.TimeoutError: the builtin one only from Python 3.11 on)
_NO_ANSWER = (NoRespondersError, NatsTimeoutError, asyncio.TimeoutError, ConnectionClosedError)


def new_job_id() -> str:
    return secrets.token_hex(8)


def _submitter() -> str:
    with contextlib.suppress(Exception):
        return f"{getpass.getuser()}@{socket.gethostname()}"
    return ""


@dataclass(frozen=True)
class Progress:
    """A step of a job: its counts, and the results that came in since the last step."""

    job_id: str
    state: str
    counts: p.Counts
    new_results: tuple[TaskResult, ...] = ()
    final: bool = False


@dataclass(frozen=True)
class JobOutcome:
    job_id: str
    state: str
    counts: p.Counts
    results: tuple[TaskResult, ...]

    @property
    def succeeded(self) -> bool:
        return self.state == "succeeded"

    @property
    def failed(self) -> tuple[TaskResult, ...]:
        return tuple(r for r in self.results if r.state != "succeeded")


class Client:
    def __init__(self, nc: NATS, *, request_timeout: float = 5.0, patience_s: float = 60.0,
                 poll_s: float = 2.0) -> None:
        self.nc = nc
        self.request_timeout = request_timeout
        self.patience_s = patience_s
        self.poll_s = poll_s

    @classmethod
    async def connect(cls, settings: NatsSettings | None = None, **options: Any) -> Client:
        """Connect to NATS (CP_NATS_* environment by default); Unreachable if it cannot."""
        nc = await connect(settings, name="cpb submit", long_lived=False,
                           inbox=p.SUBMITTER_INBOX)
        return cls(nc, **options)

    async def close(self) -> None:
        await close(self.nc)

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- requests ------------------------------------------------------------

    async def _ask(self, subject: str, message: object, reply_type: type[R], *,
                   patience_s: float, timeout: float | None = None, what: str = "") -> R:
        """Request/reply, retried until MajorDomo answers or ``patience_s`` runs out."""
        give_up = time.monotonic() + patience_s
        delay = 0.2
        data = p.encode(message)
        while True:
            try:
                reply = await self.nc.request(subject, data,
                                              timeout=timeout or self.request_timeout)
                return p.decode(reply_type, reply.data)
            except _NO_ANSWER as exc:
                if self.nc.is_closed or time.monotonic() + delay > give_up:
                    reason = ("MajorDomo is not running" if isinstance(exc, NoRespondersError)
                              else "MajorDomo does not answer")
                    raise LostContact(getattr(message, "job_id", ""),
                                      f"{what or subject}: {reason} "
                                      f"(waited {patience_s:g} s)") from None
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    async def submit(self, job: JobSpec | Mapping[str, Any], *, job_id: str | None = None,
                     patience_s: float = 15.0) -> str:
        """Submit a job; its id. JobSpecError for a bad job, JobRefused when MajorDomo
        says no (no live worker of its kind...), Unreachable when it does not answer."""
        spec = job if isinstance(job, JobSpec) else parse_job(job)
        request = p.SubmitRequest(job_id=job_id or new_job_id(), job=spec,
                                  submitter=_submitter())
        size = len(p.encode(request))
        if size > self.nc.max_payload:
            raise JobSpecError([FieldError(("tasks",), (
                f"the job is {size} bytes, NATS takes at most {self.nc.max_payload} in one "
                "message: split it into several jobs"))])
        try:
            reply = await self._ask(p.SUBMIT, request, p.SubmitReply, patience_s=patience_s,
                                    timeout=30.0, what="submitting the job")
        except LostContact as exc:
            raise Unreachable(str(exc)) from None
        if not reply.ok:
            raise JobRefused(reply.error or "refused", reply.errors)
        return reply.job_id

    async def status(self, job_id: str) -> p.StatusReply:
        reply = await self._ask(p.STATUS, p.JobQuery(job_id), p.StatusReply,
                                patience_s=self.patience_s, what=f"status of job {job_id}")
        if not reply.ok:
            raise UnknownJob(f"job {job_id}: {reply.error}")
        return reply

    async def results(self, job_id: str) -> tuple[TaskResult, ...]:
        """Every task's result (or its current state), in task order."""
        results: list[TaskResult] = []
        offset: int | None = 0
        while offset is not None:
            reply = await self._ask(p.RESULTS, p.JobQuery(job_id, offset), p.ResultsReply,
                                    patience_s=self.patience_s,
                                    what=f"results of job {job_id}")
            if not reply.ok:
                raise UnknownJob(f"job {job_id}: {reply.error}")
            results.extend(reply.results)
            offset = reply.next_offset
        return tuple(results)

    async def cancel(self, job_id: str) -> p.CancelReply:
        reply = await self._ask(p.CANCEL, p.JobQuery(job_id), p.CancelReply,
                                patience_s=self.patience_s, what=f"cancelling job {job_id}")
        if not reply.ok:
            raise UnknownJob(f"job {job_id}: {reply.error}")
        return reply

    async def workers(self, kind: str = "", *, patience_s: float = 5.0) -> tuple[p.WorkerInfo, ...]:
        """The live workers (of one kind, or all), as MajorDomo knows them."""
        reply = await self._ask(p.WORKERS, p.WorkersQuery(kind), p.WorkersReply,
                                patience_s=patience_s, what="listing workers")
        return reply.workers

    # --- following a job --------------------------------------------------------

    def follow(self, job_id: str, *, deadline_s: float | None = None) -> JobWatch:
        """``async with client.follow(id) as watch: async for progress in watch: ...``"""
        return JobWatch(self, job_id, deadline_s=deadline_s)

    async def run(self, job: JobSpec | Mapping[str, Any], *,
                  on_progress: Callable[[Progress], Awaitable[None] | None] | None = None,
                  deadline_s: float | None = None, job_id: str | None = None) -> JobOutcome:
        """Submit, follow to the end, return every result. Cancelled -> the job is cancelled."""
        job_id = job_id or new_job_id()
        async with self.follow(job_id, deadline_s=deadline_s) as watch:
            await self.submit(job, job_id=job_id)
            try:
                async for progress in watch:
                    if on_progress is not None:
                        maybe = on_progress(progress)
                        if maybe is not None:
                            await maybe
            except asyncio.CancelledError:
                with contextlib.suppress(Exception):
                    await asyncio.shield(asyncio.wait_for(self.cancel(job_id), 10.0))
                raise
        status = await self.status(job_id)
        results = await self.results(job_id)
        return JobOutcome(job_id, status.state, status.counts, results)


class JobWatch:
    """Progress of one job: events as they come, a status poll every ``poll_s``."""

    def __init__(self, client: Client, job_id: str, *, deadline_s: float | None) -> None:
        self.client = client
        self.job_id = job_id
        self.deadline = time.monotonic() + deadline_s if deadline_s else None
        self._events: asyncio.Queue[p.JobEvent] = asyncio.Queue()
        self._sub: Subscription | None = None
        self._seen: set[int] = set()
        self._last: tuple[str, p.Counts] | None = None
        self._done = False
        self._next_poll = 0.0

    async def __aenter__(self) -> JobWatch:
        self._sub = await self.client.nc.subscribe(p.job_events_subject(self.job_id),
                                                   cb=self._on_event)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()

    async def _on_event(self, msg: Msg) -> None:
        with contextlib.suppress(ProtocolError):
            self._events.put_nowait(p.decode(p.JobEvent, msg.data))

    def __aiter__(self) -> JobWatch:
        return self

    async def __anext__(self) -> Progress:
        while not self._done:
            now = time.monotonic()
            if self.deadline is not None and now > self.deadline:
                raise LostContact(self.job_id, f"job {self.job_id} is not finished by its "
                                  "deadline; it may still be running")
            if now >= self._next_poll:
                self._next_poll = now + self.client.poll_s
                status = await self.client.status(self.job_id)
                step = self._step(status.state, status.counts, (), status.final)
            else:
                try:
                    event = await asyncio.wait_for(self._events.get(), self._next_poll - now)
                except asyncio.TimeoutError:
                    continue
                step = self._step(event.state, event.counts, event.results,
                                  event.type == "final")
            if step is not None:
                return step
        raise StopAsyncIteration

    def _step(self, state: str, counts: p.Counts, results: tuple[TaskResult, ...],
              final: bool) -> Progress | None:
        new = tuple(r for r in results if r.index not in self._seen)
        self._seen.update(r.index for r in new)
        self._done = final
        if not final and self._last is not None and (
                counts.finished < self._last[1].finished):
            counts = self._last[1]  # an older event overtaken by a status poll
        if not new and not final and self._last == (state, counts):
            return None
        self._last = (state, counts)
        return Progress(self.job_id, state, counts, new, final)
