"""The job model and the wire format: no server needed."""

from __future__ import annotations

import json

import pytest

from cpb_runtime import FieldError, JobSpecError, ProtocolError, format_path, parse_job
from cpb_runtime import protocol as p
from cpb_runtime.jobs import Job, task_message


def job_data(**over: object) -> dict[str, object]:
    data: dict[str, object] = {
        "kind": "gcc", "timeout": 120, "workdir": "/work",
        "tasks": [{"argv": ["gcc", "-c", "a.c"], "name": "a.o"},
                  {"argv": ["gcc", "-c", "b.c"], "workdir": "/src", "env": {"LC_ALL": "C"}},
                  ["true"]],
    }
    data.update(over)
    return data


def errors_of(data: object) -> list[str]:
    with pytest.raises(JobSpecError) as caught:
        parse_job(data)
    return [str(e) for e in caught.value.errors]


def test_a_job_file_parses_with_defaults() -> None:
    job = parse_job(job_data())
    assert job.kind == "gcc" and job.timeout == 120.0 and job.workdir == "/work"
    assert [t.name for t in job.tasks] == ["a.o", "1", "2"]
    assert job.tasks[2].argv == ("true",)
    assert parse_job({"kind": "k", "tasks": [["x"]]}).timeout == 600.0


def test_task_messages_apply_the_job_defaults() -> None:
    job = parse_job(job_data(env={"A": "1", "LC_ALL": "POSIX"}))
    first, second = task_message(job, "j1", 0), task_message(job, "j1", 1)
    assert (first.workdir, first.timeout, dict(first.env)) == ("/work", 120.0,
                                                              {"A": "1", "LC_ALL": "POSIX"})
    assert (second.workdir, dict(second.env)) == ("/src", {"A": "1", "LC_ALL": "C"})


@pytest.mark.parametrize(("data", "expected"), [
    ([], "(top level): a job must be a mapping"),
    ({"tasks": [["x"]]}, "kind: required"),
    (job_data(kind="gcc.x"), "kind: must be a name"),
    (job_data(tasks=[]), "tasks: must be a non-empty list"),
    (job_data(tmeout=3), "tmeout: unknown key (did you mean 'timeout'?)"),
    (job_data(timeout=0), "timeout: must be a number of seconds"),
    (job_data(timeout=True), "timeout: must be a number of seconds"),
    (job_data(tasks=[{"argv": "gcc -c a.c"}]), "tasks[0].argv: must be a non-empty list"),
    (job_data(tasks=[{"argv": ["gcc", 3]}]), "tasks[0].argv: must be a non-empty list"),
    (job_data(tasks=[{"argv": [""]}]), "tasks[0].argv[0]: the program must not be empty"),
    (job_data(tasks=[{"name": "x"}]), "tasks[0].argv: required"),
    (job_data(tasks=[["a"], {"argv": ["b"], "nmae": "x"}]),
     "tasks[1].nmae: unknown key (did you mean 'name'?)"),
    (job_data(tasks=[{"argv": ["a"], "env": {"N": 1}}]), "tasks[0].env.N: must be a string"),
    (job_data(tasks=[{"argv": ["a"], "name": "x"}, {"argv": ["b"], "name": "x"}]),
     "tasks[1].name: duplicate name 'x' (also tasks[0])"),
    (job_data(tasks=["gcc"]), "tasks[0]: a task must be a mapping"),
])
def test_bad_jobs_name_the_field_path(data: object, expected: str) -> None:
    assert any(e.startswith(expected) for e in errors_of(data)), errors_of(data)


def test_every_problem_is_listed_with_its_path() -> None:
    errors = errors_of({"kind": "", "tasks": [{"argv": []}, {"argv": ["ok"], "timeout": -1}]})
    assert [e.split(":")[0] for e in errors] == ["kind", "tasks[0].argv", "tasks[1].timeout"]
    assert p.validate_job(job_data()) == []
    assert format_path(("tasks", 3, "env", "X")) == "tasks[3].env.X"


def test_messages_round_trip_with_their_version() -> None:
    job = parse_job(job_data())
    request = p.SubmitRequest("j1", job, "me@host")
    data = p.encode(request)
    assert json.loads(data)["v"] == p.PROTOCOL_VERSION
    assert p.decode(p.SubmitRequest, data) == request
    reply = p.SubmitReply(False, "j1", "invalid job", (FieldError(("tasks", 0, "argv"), "bad"),))
    assert p.decode(p.SubmitReply, p.encode(reply)) == reply
    beat = p.Heartbeat("w1", "gcc", 4, 2.0, (p.RunningTask("j1", 3, 2),), True)
    assert p.decode(p.Heartbeat, p.encode(beat)) == beat
    status = p.StatusReply(True, "j1", kind="gcc", state="running", counts=p.Counts(3, 1, 1, 1))
    assert p.decode(p.StatusReply, p.encode(status)) == status


def test_a_submitted_job_is_validated_like_a_job_file() -> None:
    raw = json.dumps({"v": 1, "job_id": "j1", "job": {"kind": "k", "tasks": [{"argv": 1}]}})
    with pytest.raises(JobSpecError, match=r"tasks\[0\]\.argv"):
        p.decode(p.SubmitRequest, raw.encode())


@pytest.mark.parametrize(("raw", "expected"), [
    (b"not json", "not JSON"),
    (b'{"v": 2, "job_id": "j"}', "protocol version 2"),
    (b'{"v": 1}', "job_id: missing"),
    (b'{"v": 1, "job_id": "j", "offset": "3"}', "offset: expected an integer"),
])
def test_bad_messages_are_refused_with_the_field(raw: bytes, expected: str) -> None:
    with pytest.raises(ProtocolError, match=expected):
        p.decode(p.JobQuery, raw)


def test_unknown_fields_are_ignored_within_a_version() -> None:
    assert p.decode(p.JobQuery, b'{"v": 1, "job_id": "j", "new_field": 1}') == p.JobQuery("j")


def test_a_result_is_shrunk_to_fit_one_message() -> None:
    huge = "\x01" * p.TAIL_BYTES  # escapes to six bytes each in JSON
    result = p.TaskResult("j", 0, "t", "failed", 1, stdout_tail=huge, stderr_tail=huge)
    fitted = p.fit_result(result)
    assert len(p.encode(fitted)) <= p.MAX_RESULT_BYTES
    assert fitted.stdout_tail and huge.endswith(fitted.stdout_tail)
    assert p.tail_text(b"x" * 10 + b"\xff", limit=4) == "xxx\ufffd"


def test_job_bookkeeping_first_terminal_result_wins() -> None:
    spec = parse_job({"kind": "k", "tasks": [["a"], ["b"], ["c"]]})
    job = Job(p.JobRecord("j", "k", "running", 3, 0.0), spec)
    job.mark_running(0, "w1", 1)
    assert job.counts() == p.Counts(total=3, pending=2, running=1)
    assert job.accept(p.TaskResult("j", 0, "0", "succeeded", 0, worker="w1"))
    assert not job.accept(p.TaskResult("j", 0, "0", "succeeded", 0, worker="w2"))
    assert not job.accept(p.TaskResult("j", 7, "7", "succeeded", 0))
    job.mark_running(1, "w1", 1)
    job.record = p.JobRecord("j", "k", "running", 3, 0.0, cancelled=True)
    assert job.cancel_waiting(now=0.0, grace_s=5) == [2]
    assert not job.complete()
    assert job.expire_cancel(now=6.0) and job.complete()
    assert job.final_state() == "cancelled"
    assert job.results[1].reason.startswith("cancelled")
