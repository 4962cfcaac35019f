"""Subjects, stream names and message formats of the runtime: the one place they are defined.

Version 1. Every subject starts with ``cp.v1.``; every message is a JSON object
with ``"v": 1``. Within a version, fields are only ever added (readers ignore
fields they do not know); removing a field or changing its meaning makes a
new version with new subjects. docs/runtime.md describes each message.

Subjects are laid out for per-role permissions (issue 14): the worker kind is
a token of every subject a worker uses, the submitter only needs
``cp.v1.md.*`` and ``cp.v1.job.<id>``, and only MajorDomo touches the
JetStream API beyond binding to its kind's consumer.
"""

from __future__ import annotations

import dataclasses
import json
import re
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from cpb_runtime.errors import FieldError, JobSpecError, PathPart, ProtocolError, format_path

PROTOCOL_VERSION = 1
PREFIX = f"cp.v{PROTOCOL_VERSION}"

# --- Names -----------------------------------------------------------------

#: Worker kinds and worker names are subject tokens and consumer names.
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
#: Job ids are made by the client (see client.new_job_id) and are subject tokens too.
JOB_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


def check_name(what: str, value: str) -> str:
    if not NAME_RE.match(value):
        raise ProtocolError(
            f"{what} {value!r} is not a valid name: use letters, digits, '-' and '_' "
            "(at most 64, starting with a letter or digit)"
        )
    return value


def sanitize_name(value: str) -> str:
    """Make a worker name out of anything (a hostname with dots, say)."""
    cleaned = re.sub(r"[^A-Za-z0-9_-]", "-", value).strip("-_")[:64]
    return cleaned or "worker"


# --- Subjects (request/reply served by MajorDomo) ----------------------------

SUBMIT = f"{PREFIX}.md.submit"
STATUS = f"{PREFIX}.md.status"
RESULTS = f"{PREFIX}.md.results"
CANCEL = f"{PREFIX}.md.cancel"
WORKERS = f"{PREFIX}.md.workers"
MAJORDOMO_REQUESTS = f"{PREFIX}.md.*"


def job_events_subject(job_id: str) -> str:
    """MajorDomo -> submitter, core NATS: JobEvent."""
    return f"{PREFIX}.job.{job_id}"


# --- Subjects used by workers: the kind is always the third token -------------


def task_subject(kind: str, job_id: str) -> str:
    """MajorDomo -> TASK_STREAM: TaskMessage."""
    return f"{PREFIX}.task.{kind}.{job_id}"


def task_filter(kind: str) -> str:
    return f"{PREFIX}.task.{kind}.>"


def task_consumer(kind: str) -> str:
    """The one durable pull consumer of a kind (made by MajorDomo, bound by workers)."""
    return f"tasks-{kind}"


def result_subject(kind: str, job_id: str) -> str:
    """Worker -> RESULT_STREAM: TaskResult (JetStream publish, acknowledged)."""
    return f"{PREFIX}.result.{kind}.{job_id}"


def started_subject(kind: str, job_id: str) -> str:
    """Worker -> MajorDomo, core NATS: TaskStarted."""
    return f"{PREFIX}.started.{kind}.{job_id}"


def heartbeat_subject(kind: str, worker: str) -> str:
    """Worker -> MajorDomo, core NATS: Heartbeat."""
    return f"{PREFIX}.hb.{kind}.{worker}"


def inbox_prefix(role: str) -> str:
    """The prefix of a connection's reply subjects (nats-py's `inbox_prefix`): one per
    role (``majordomo``, ``worker-<kind>``, ``submitter``), so that NATS permissions
    let each role hear its own replies only, not everyone's under ``_INBOX.>``."""
    return f"_INBOX.{role}"


MAJORDOMO_INBOX = inbox_prefix("majordomo")
SUBMITTER_INBOX = inbox_prefix("submitter")


def worker_inbox(kind: str) -> str:
    return inbox_prefix(f"worker-{check_name('kind', kind)}")


def cancel_subject(kind: str) -> str:
    """MajorDomo -> workers of a kind, core NATS: CancelNotice."""
    return f"{PREFIX}.cancel.{kind}"


STARTED_ALL = f"{PREFIX}.started.>"
HEARTBEAT_ALL = f"{PREFIX}.hb.>"

# --- JetStream objects (all made by MajorDomo) -------------------------------

TASK_STREAM = "CP_TASKS"  # work queue: subjects cp.v1.task.>
TASK_STREAM_SUBJECTS = f"{PREFIX}.task.>"
RESULT_STREAM = "CP_RESULTS"  # work queue: subjects cp.v1.result.>
RESULT_STREAM_SUBJECTS = f"{PREFIX}.result.>"
RESULT_CONSUMER = "majordomo"
ADVISORY_STREAM = "CP_ADVISORIES"  # keeps max-deliveries advisories while MajorDomo is down
MAX_DELIVERIES_ADVISORIES = f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{TASK_STREAM}.*"
ADVISORY_CONSUMER = "majordomo"
JOB_BUCKET = "CP_JOBS"  # KV: job.<id>, spec.<id>, res.<id>.<index>


def job_key(job_id: str) -> str:
    return f"job.{job_id}"


def spec_key(job_id: str) -> str:
    return f"spec.{job_id}"


def result_key(job_id: str, index: int) -> str:
    return f"res.{job_id}.{index}"


# --- Limits ------------------------------------------------------------------

TAIL_BYTES = 64 * 1024  # of stdout and of stderr, per task
MAX_RESULT_BYTES = 900 * 1024  # an encoded TaskResult; nats-server's default max_payload is 1 MiB
MAX_TASKS = 100_000
MAX_TIMEOUT_S = 7 * 24 * 3600.0
DEFAULT_TIMEOUT_S = 600.0
MAX_TASK_NAME = 200

TaskState = Literal["pending", "running", "succeeded", "failed", "cancelled"]
TERMINAL_STATES: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})
JobState = Literal["submitting", "running", "succeeded", "failed", "cancelled"]
FINAL_JOB_STATES: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})

# --- The job (the job file, and the body of a submit request) ----------------


@dataclass(frozen=True)
class TaskSpec:
    argv: tuple[str, ...]
    name: str
    workdir: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    timeout: float | None = None


@dataclass(frozen=True)
class JobSpec:
    kind: str
    tasks: tuple[TaskSpec, ...]
    timeout: float = DEFAULT_TIMEOUT_S
    workdir: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return _to_wire(self)  # type: ignore[no-any-return]


_JOB_KEYS = ("kind", "timeout", "workdir", "env", "tasks")
_TASK_KEYS = ("argv", "name", "workdir", "env", "timeout")


def parse_job(data: object) -> JobSpec:
    """Validate parsed job data (from YAML or JSON) into a JobSpec.

    Raises JobSpecError listing every problem with its field path, e.g.
    ``tasks[3].argv: must be a non-empty list of strings``.
    """
    errors: list[FieldError] = []
    job = _parse_job(data, errors)
    if errors or job is None:
        raise JobSpecError(errors or [FieldError((), "invalid job")])
    return job


def validate_job(data: object) -> list[FieldError]:
    """The problems of a job, as a list (empty when it is valid)."""
    errors: list[FieldError] = []
    _parse_job(data, errors)
    return errors


def _parse_job(data: object, errors: list[FieldError]) -> JobSpec | None:
    if not isinstance(data, Mapping):
        errors.append(FieldError((), "a job must be a mapping with 'kind' and 'tasks'"))
        return None
    _unknown_keys(data, _JOB_KEYS, (), errors)
    kind = data.get("kind")
    if kind is None:
        errors.append(FieldError(("kind",), "required: the kind of worker that runs the tasks"))
    elif not isinstance(kind, str) or not NAME_RE.match(kind):
        errors.append(FieldError(("kind",), "must be a name of letters, digits, '-' and '_'"))
    timeout = _timeout(data.get("timeout"), ("timeout",), errors)
    workdir = _workdir(data.get("workdir"), ("workdir",), errors)
    env = _env(data.get("env"), ("env",), errors)
    raw_tasks = data.get("tasks")
    tasks: list[TaskSpec] = []
    if raw_tasks is None:
        errors.append(FieldError(("tasks",), "required: a list of tasks"))
    elif not isinstance(raw_tasks, list) or not raw_tasks:
        errors.append(FieldError(("tasks",), "must be a non-empty list of tasks"))
    elif len(raw_tasks) > MAX_TASKS:
        errors.append(FieldError(("tasks",), f"at most {MAX_TASKS} tasks in one job"))
    else:
        seen: dict[str, int] = {}
        for index, raw in enumerate(raw_tasks):
            task = _parse_task(raw, index, errors)
            if task is None:
                continue
            if task.name in seen:
                errors.append(FieldError(
                    ("tasks", index, "name"),
                    f"duplicate name {task.name!r} (also tasks[{seen[task.name]}])"))
            seen.setdefault(task.name, index)
            tasks.append(task)
    if errors or not isinstance(kind, str):
        return None
    return JobSpec(kind=kind, tasks=tuple(tasks), timeout=timeout or DEFAULT_TIMEOUT_S,
                   workdir=workdir, env=env)


def _parse_task(raw: object, index: int, errors: list[FieldError]) -> TaskSpec | None:
    at: tuple[PathPart, ...] = ("tasks", index)
    if isinstance(raw, list):  # shorthand: a task that is just its argv
        raw = {"argv": raw}
    if not isinstance(raw, Mapping):
        errors.append(FieldError(at, "a task must be a mapping with 'argv' (or a list: its argv)"))
        return None
    before = len(errors)
    _unknown_keys(raw, _TASK_KEYS, at, errors)
    argv = raw.get("argv")
    if argv is None:
        errors.append(FieldError((*at, "argv"), "required: the command as a list of strings"))
    elif (not isinstance(argv, list) or not argv
          or not all(isinstance(a, str) for a in argv)):
        errors.append(FieldError((*at, "argv"), "must be a non-empty list of strings "
                                 "(no shell: one item per argument)"))
    elif not argv[0]:
        errors.append(FieldError((*at, "argv", 0), "the program must not be empty"))
    elif any("\0" in a for a in argv):
        errors.append(FieldError((*at, "argv"), "must not contain NUL characters"))
    name = raw.get("name", str(index))
    if isinstance(name, int) and not isinstance(name, bool):
        name = str(name)
    if not isinstance(name, str) or not name or len(name) > MAX_TASK_NAME or not name.isprintable():
        errors.append(FieldError((*at, "name"),
                                 f"must be a printable string of 1 to {MAX_TASK_NAME} characters"))
    workdir = _workdir(raw.get("workdir"), (*at, "workdir"), errors)
    env = _env(raw.get("env"), (*at, "env"), errors)
    timeout = _timeout(raw.get("timeout"), (*at, "timeout"), errors)
    if len(errors) > before:
        return None
    assert isinstance(argv, list) and isinstance(name, str)
    return TaskSpec(argv=tuple(argv), name=name, workdir=workdir, env=env, timeout=timeout)


def _unknown_keys(data: Mapping[Any, Any], allowed: tuple[str, ...], at: tuple[PathPart, ...],
                  errors: list[FieldError]) -> None:
    import difflib

    for key in data:
        if key in allowed:
            continue
        close = difflib.get_close_matches(str(key), allowed, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else f" (allowed: {', '.join(allowed)})"
        errors.append(FieldError((*at, str(key)), f"unknown key{hint}"))


def _timeout(value: object, at: tuple[PathPart, ...], errors: list[FieldError]) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not (
            0 < value <= MAX_TIMEOUT_S):
        errors.append(FieldError(at, f"must be a number of seconds, above 0 and at most "
                                     f"{int(MAX_TIMEOUT_S)}"))
        return None
    return float(value)


def _workdir(value: object, at: tuple[PathPart, ...], errors: list[FieldError]) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value or "\0" in value:
        errors.append(FieldError(at, "must be a non-empty path"))
        return None
    return value


def _env(value: object, at: tuple[PathPart, ...], errors: list[FieldError]) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        errors.append(FieldError(at, "must be a mapping of variable names to strings"))
        return {}
    env: dict[str, str] = {}
    for key, val in value.items():
        if not isinstance(key, str) or not key or "=" in key or "\0" in key:
            errors.append(FieldError((*at, str(key)), "not a valid variable name"))
        elif not isinstance(val, str) or "\0" in val:
            errors.append(FieldError((*at, key), "must be a string (quote numbers)"))
        else:
            env[key] = val
    return env


# --- Messages ------------------------------------------------------------------


@dataclass(frozen=True)
class SubmitRequest:
    """Submitter -> MajorDomo on SUBMIT. ``job_id`` is chosen by the client, which
    makes a retried submission idempotent."""

    job_id: str
    job: JobSpec
    submitter: str = ""


@dataclass(frozen=True)
class SubmitReply:
    ok: bool
    job_id: str
    error: str = ""
    errors: tuple[FieldError, ...] = ()


@dataclass(frozen=True)
class TaskMessage:
    """One task in TASK_STREAM, with the job's defaults already applied."""

    job_id: str
    index: int
    kind: str
    name: str
    argv: tuple[str, ...]
    timeout: float
    workdir: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class TaskStarted:
    job_id: str
    index: int
    worker: str
    attempt: int


@dataclass(frozen=True)
class TaskResult:
    """The outcome of one task. ``exit_code`` is None when the process never ran or
    was killed; ``reason`` says why a task failed other than by its exit code
    ("timed out after 120 s", "cancelled", "could not start: ...", "worker lost 3 times")."""

    job_id: str
    index: int
    name: str
    state: TaskState
    exit_code: int | None = None
    duration_s: float = 0.0
    attempt: int = 0
    worker: str = ""
    stdout_tail: str = ""
    stderr_tail: str = ""
    reason: str = ""

    @property
    def succeeded(self) -> bool:
        return self.state == "succeeded"


@dataclass(frozen=True)
class RunningTask:
    job_id: str
    index: int
    attempt: int


@dataclass(frozen=True)
class Heartbeat:
    worker: str
    kind: str
    slots: int
    interval_s: float
    running: tuple[RunningTask, ...] = ()
    ready: bool = False  # bound to its kind's consumer
    stopping: bool = False  # SIGTERM received: takes no new tasks


@dataclass(frozen=True)
class CancelNotice:
    job_id: str


@dataclass(frozen=True)
class JobQuery:
    """Submitter -> MajorDomo on STATUS, RESULTS and CANCEL."""

    job_id: str
    offset: int = 0  # RESULTS only: first task index


@dataclass(frozen=True)
class Counts:
    total: int = 0
    pending: int = 0
    running: int = 0
    succeeded: int = 0
    failed: int = 0
    cancelled: int = 0

    @property
    def finished(self) -> int:
        return self.succeeded + self.failed + self.cancelled


@dataclass(frozen=True)
class StatusReply:
    ok: bool
    job_id: str
    error: str = ""
    kind: str = ""
    state: str = ""
    final: bool = False
    counts: Counts = field(default_factory=Counts)


@dataclass(frozen=True)
class ResultsReply:
    """A page of results, in task order; ``next_offset`` is None on the last page."""

    ok: bool
    job_id: str
    error: str = ""
    results: tuple[TaskResult, ...] = ()
    next_offset: int | None = None


@dataclass(frozen=True)
class CancelReply:
    ok: bool
    job_id: str
    error: str = ""
    state: str = ""


@dataclass(frozen=True)
class WorkersQuery:
    kind: str = ""  # empty: every kind


@dataclass(frozen=True)
class WorkerInfo:
    name: str
    kind: str
    slots: int
    running: int
    ready: bool
    stopping: bool
    last_seen_s: float


@dataclass(frozen=True)
class WorkersReply:
    workers: tuple[WorkerInfo, ...] = ()


@dataclass(frozen=True)
class JobEvent:
    """MajorDomo -> submitter on job_events_subject(id), at most every 0.25 s while
    something changes. ``type`` is "progress", or "final" when the job is over;
    ``results`` are those that came in since the previous event."""

    job_id: str
    type: Literal["progress", "final"]
    state: str
    counts: Counts
    results: tuple[TaskResult, ...] = ()


@dataclass(frozen=True)
class JobRecord:
    """MajorDomo's record of a job, in JOB_BUCKET under job_key(id)."""

    job_id: str
    kind: str
    state: JobState
    total: int
    created: float
    submitter: str = ""
    cancelled: bool = False
    seqs: tuple[int, ...] = ()  # TASK_STREAM sequence of each task, once published
    finished: float = 0.0


@dataclass(frozen=True)
class MaxDeliveriesAdvisory:
    """nats-server's io.nats.jetstream.advisory.v1.max_deliver (not ours; no "v")."""

    stream: str
    consumer: str
    stream_seq: int
    deliveries: int


# --- Encoding --------------------------------------------------------------------

T = TypeVar("T")


def encode(message: object) -> bytes:
    """A message as compact UTF-8 JSON with ``"v": PROTOCOL_VERSION``."""
    body = _to_wire(message)
    return json.dumps({"v": PROTOCOL_VERSION, **body}, ensure_ascii=False,
                      separators=(",", ":")).encode()


def decode(cls: type[T], data: bytes, *, versioned: bool = True) -> T:
    """Parse and check a message; raise ProtocolError naming the bad field.

    A JobSpec inside a message is checked by parse_job, whose JobSpecError
    (with paths relative to the job) is raised as is.
    """
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"{cls.__name__}: not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise ProtocolError(f"{cls.__name__}: not a JSON object")
    if versioned:
        version = obj.get("v")
        if version != PROTOCOL_VERSION:
            raise ProtocolError(f"{cls.__name__}: protocol version {version!r}, "
                                f"this side speaks {PROTOCOL_VERSION}")
    return _from_wire(cls, obj, ())  # type: ignore[no-any-return]


_PLAIN = (str, int, float, bool, type(None))
_FIELDS: dict[type, tuple[str, ...]] = {}


def _to_wire(value: object) -> Any:
    cls = type(value)
    if cls in _PLAIN:
        return value
    names = _FIELDS.get(cls)
    if names is None and dataclasses.is_dataclass(value) and not isinstance(value, type):
        names = _FIELDS[cls] = tuple(f.name for f in dataclasses.fields(value))
    if names is not None:
        return {name: _to_wire(getattr(value, name)) for name in names}
    if isinstance(value, tuple | list):
        return [_to_wire(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _to_wire(v) for k, v in value.items()}
    return value


# Decoding: one checking function per type, made once from the dataclasses' hints.
Path_ = tuple[PathPart, ...]
Decoder = Callable[[Any, Path_], Any]
_DECODERS: dict[Any, Decoder] = {}


def _bad(path: Path_, expected: str, value: Any) -> ProtocolError:
    return ProtocolError(f"{format_path(path)}: expected {expected}, got {value!r:.80}")


def _job_from_wire(obj: Any, path: Path_) -> JobSpec:
    return parse_job(obj)


def _field_error_from_wire(obj: Any, path: Path_) -> FieldError:
    if not isinstance(obj, dict) or not isinstance(obj.get("message"), str) or not isinstance(
            obj.get("path"), list):
        raise ProtocolError(f"{format_path(path)}: not a field error")
    parts = tuple(p for p in obj["path"] if isinstance(p, str | int))
    return FieldError(parts, obj["message"])


def _plain_decoder(tp: type, expected: str) -> Decoder:
    def decode_plain(value: Any, path: Path_) -> Any:
        if type(value) is tp:
            return value
        if tp is float and type(value) is int:
            return float(value)
        raise _bad(path, expected, value)
    return decode_plain


def _from_wire(tp: Any, value: Any, path: Path_) -> Any:
    decoder = _DECODERS.get(tp)
    if decoder is None:
        decoder = _DECODERS[tp] = _make_decoder(tp)
    return decoder(value, path)


def _make_decoder(tp: Any) -> Decoder:
    if tp is JobSpec:
        return _job_from_wire
    if tp is FieldError:
        return _field_error_from_wire
    plain = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}
    if tp in plain:
        return _plain_decoder(tp, plain[tp])
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        (inner,) = [a for a in args if a is not type(None)]

        def decode_optional(value: Any, path: Path_) -> Any:
            return None if value is None else _from_wire(inner, value, path)
        return decode_optional
    if origin is Literal:
        def decode_literal(value: Any, path: Path_) -> Any:
            if value not in args:
                raise _bad(path, " or ".join(map(repr, args)), value)
            return value
        return decode_literal
    if origin is tuple:
        item = args[0]

        def decode_tuple(value: Any, path: Path_) -> Any:
            if not isinstance(value, list):
                raise _bad(path, "a list", value)
            return tuple(_from_wire(item, v, (*path, i)) for i, v in enumerate(value))
        return decode_tuple
    if origin in (Mapping, dict):
        def decode_mapping(value: Any, path: Path_) -> Any:
            if not isinstance(value, dict) or not all(
                    isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
                raise _bad(path, "a mapping of strings", value)
            return dict(value)
        return decode_mapping
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        hints = typing.get_type_hints(tp)
        fields = [(f.name, hints[f.name], f.default is dataclasses.MISSING
                   and f.default_factory is dataclasses.MISSING) for f in dataclasses.fields(tp)]
        make = typing.cast(Any, tp)

        def decode_dataclass(value: Any, path: Path_) -> Any:
            if not isinstance(value, dict):
                raise _bad(path, "an object", value)
            kwargs = {}
            for name, hint, required in fields:
                if name in value:
                    kwargs[name] = _from_wire(hint, value[name], (*path, name))
                elif required:
                    raise ProtocolError(f"{format_path((*path, name))}: missing")
            return make(**kwargs)
        return decode_dataclass
    raise TypeError(f"no wire decoder for {tp!r}")  # a bug here, not bad input


def decode_advisory(data: bytes) -> MaxDeliveriesAdvisory:
    return decode(MaxDeliveriesAdvisory, data, versioned=False)


# --- Output tails ---------------------------------------------------------------


def tail_text(data: bytes, limit: int = TAIL_BYTES) -> str:
    """The last ``limit`` bytes of an output, as text (bad UTF-8 replaced)."""
    return bytes(data[-limit:]).decode("utf-8", errors="replace")


def fit_result(result: TaskResult, limit: int = MAX_RESULT_BYTES) -> TaskResult:
    """Shorten the tails until the encoded result fits in one NATS message."""
    if 6 * (len(result.stdout_tail) + len(result.stderr_tail)) + 8192 < limit:
        return result  # a character takes at most 6 bytes in JSON (\u001b): it fits
    while len(encode(result)) > limit and (result.stdout_tail or result.stderr_tail):
        result = dataclasses.replace(
            result,
            stdout_tail=result.stdout_tail[len(result.stdout_tail) // 2:]
            if len(result.stdout_tail) > 16 else "",
            stderr_tail=result.stderr_tail[len(result.stderr_tail) // 2:]
            if len(result.stderr_tail) > 16 else "",
        )
    return result


def count_states(states: typing.Iterable[str]) -> Counts:
    tally = {"pending": 0, "running": 0, "succeeded": 0, "failed": 0, "cancelled": 0}
    total = 0
    for state in states:
        tally[state] += 1
        total += 1
    return Counts(total=total, **tally)
