"""MajorDomo's bookkeeping of one job: the state of each task, its counts, its end.

Pure and synchronous (no NATS here): majordomo.py feeds it results, start
notices and heartbeats, and persists what it says.

A task's state moves pending -> running -> succeeded/failed/cancelled, and
back from running to pending when its worker is lost (JetStream redelivers
it). The first terminal result of a task wins; later ones (a redelivered
task that also ran to the end) are duplicates and are ignored.
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from dataclasses import dataclass, field

from cpb_runtime import protocol as p


@dataclass
class Running:
    worker: str
    attempt: int
    since: float  # time.monotonic()


@dataclass
class Job:
    record: p.JobRecord
    spec: p.JobSpec
    results: dict[int, p.TaskResult] = field(default_factory=dict)  # terminal ones only
    running: dict[int, Running] = field(default_factory=dict)
    cancel_deadline: float | None = None  # monotonic; running tasks of a cancelled job
    finished_at: float | None = None  # monotonic, when it became final here
    dirty: bool = False  # counts changed since the last progress event
    outbox: list[p.TaskResult] = field(default_factory=list)  # for the next event
    outbox_bytes: int = 0
    tally: Counter[str] = field(default_factory=Counter)  # tasks by state, kept up to date

    def __post_init__(self) -> None:
        self.tally = Counter(self.state_of(i) for i in range(self.record.total))

    def _moved(self, index: int, before: str) -> None:
        after = self.state_of(index)
        if after != before:
            self.tally[before] -= 1
            self.tally[after] += 1
            self.dirty = True

    @property
    def job_id(self) -> str:
        return self.record.job_id

    @property
    def final(self) -> bool:
        return self.record.state in p.FINAL_JOB_STATES

    def task_name(self, index: int) -> str:
        return self.spec.tasks[index].name

    def state_of(self, index: int) -> p.TaskState:
        if index in self.results:
            return self.results[index].state
        return "running" if index in self.running else "pending"

    def counts(self) -> p.Counts:
        t = self.tally
        return p.Counts(total=self.record.total, pending=t["pending"], running=t["running"],
                        succeeded=t["succeeded"], failed=t["failed"], cancelled=t["cancelled"])

    def unfinished(self) -> list[int]:
        return [i for i in range(self.record.total) if i not in self.results]

    # --- what happens to tasks --------------------------------------------------

    def valid_index(self, index: int) -> bool:
        return 0 <= index < self.record.total

    def mark_running(self, index: int, worker: str, attempt: int) -> None:
        if self.valid_index(index) and index not in self.results:
            current = self.running.get(index)
            if current is None or (current.worker, current.attempt) != (worker, attempt):
                before = self.state_of(index)
                self.running[index] = Running(worker, attempt, time.monotonic())
                self._moved(index, before)

    def mark_lost(self, index: int) -> None:
        """Its worker is gone: JetStream will deliver it again, so it is pending."""
        if index in self.running:
            before = self.state_of(index)
            del self.running[index]
            self._moved(index, before)

    def accept(self, result: p.TaskResult) -> bool:
        """Record a terminal result; False when it is a duplicate or out of range."""
        if not self.valid_index(result.index) or result.index in self.results:
            return False
        if result.name != self.task_name(result.index):
            result = dataclasses.replace(result, name=self.task_name(result.index))
        before = self.state_of(result.index)
        self.results[result.index] = result
        self.running.pop(result.index, None)
        self._moved(result.index, before)
        return True

    def forget(self, index: int) -> None:
        """Undo accept() when the result could not be stored."""
        if index in self.results:
            before = self.state_of(index)
            del self.results[index]
            self._moved(index, before)

    def cancel_waiting(self, now: float, grace_s: float) -> list[int]:
        """Cancel what has not started; running tasks get until the deadline to report."""
        dropped = []
        for index in self.unfinished():
            if index not in self.running:
                self.accept(self.synthetic(index, "cancelled", "cancelled before it started"))
                dropped.append(index)
        self.cancel_deadline = now + grace_s
        self.dirty = True
        return dropped

    def expire_cancel(self, now: float) -> bool:
        """After the grace: running tasks that never reported are cancelled anyway."""
        if self.cancel_deadline is None or now < self.cancel_deadline:
            return False
        for index in self.unfinished():
            self.accept(self.synthetic(index, "cancelled",
                                       "cancelled; its worker did not report the kill"))
        self.cancel_deadline = None
        self.dirty = True
        return True

    def synthetic(self, index: int, state: p.TaskState, reason: str,
                  attempt: int = 0) -> p.TaskResult:
        running = self.running.get(index)
        return p.TaskResult(job_id=self.job_id, index=index, name=self.task_name(index),
                            state=state, attempt=attempt or (running.attempt if running else 0),
                            worker=running.worker if running else "", reason=reason)

    def result_or_state(self, index: int) -> p.TaskResult:
        """The result of a task, or a placeholder saying pending/running."""
        if index in self.results:
            return self.results[index]
        return self.synthetic(index, self.state_of(index), "")

    # --- the job's end ---------------------------------------------------------------

    def complete(self) -> bool:
        return len(self.results) >= self.record.total

    def final_state(self) -> p.JobState:
        if self.record.cancelled:
            return "cancelled"
        if all(r.state == "succeeded" for r in self.results.values()):
            return "succeeded"
        return "failed"


def task_message(spec: p.JobSpec, job_id: str, index: int) -> p.TaskMessage:
    """A task as it goes into the stream: the job's defaults applied."""
    task = spec.tasks[index]
    return p.TaskMessage(
        job_id=job_id, index=index, kind=spec.kind, name=task.name, argv=task.argv,
        timeout=task.timeout or spec.timeout, workdir=task.workdir or spec.workdir,
        env={**spec.env, **task.env})
