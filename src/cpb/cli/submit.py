"""`cpb submit POD JOBFILE`: run a job's tasks on a running pod's workers.

The job file is read with cpb's YAML loader, so a bad field is reported as
`job.yaml:12:7: tasks[3].argv: ...` (exit 2), then checked by the runtime's
own validator (cpb_runtime.protocol.parse_job, the same one MajorDomo uses).
The pod is reached through the NATS port it publishes on this machine, over
mutual TLS with the project's submitter certificate (docs/security.md).
Progress goes to stderr (a bar on a terminal, plain lines otherwise), the
summary to stdout, or one JSON document with --json.

Exit codes: 0 every task succeeded; 1 a task failed (or the job was
cancelled); 2 a bad job file or command line; 3 the pod cannot be reached;
130/143/129 interrupted (the job is cancelled: tasks not started are
dropped, running ones killed).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import signal
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import click

from cpb.errors import (
    EXIT_FAILED,
    EXIT_HANGUP,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_TERMINATED,
    EnvironmentProblem,
    SpecError,
)

# asyncio, cpb.resolve.runtime and the YAML loader are imported where used:
# every `cpb` command line (even --version) imports this module.
if TYPE_CHECKING:
    from cpb.cli.options import Options
    from cpb.spec.model import ProjectSpec
    from cpb.spec.yamlload import Mark
    from cpb_runtime.client import JobOutcome, Progress
    from cpb_runtime.protocol import JobSpec, TaskResult
    from cpb_runtime.settings import NatsSettings

PLAIN_EVERY_S = 10.0  # a progress line at least this often when nothing else is said
TAIL_LINES = 12  # lines of a failed task's stderr in the summary
_SIGNAL_EXITS = {signal.SIGINT: EXIT_INTERRUPTED, signal.SIGTERM: EXIT_TERMINATED,
                 signal.SIGHUP: EXIT_HANGUP}


# -- the job file ---------------------------------------------------------------

def load_job(path: Path) -> JobSpec:
    """The job in `path` (YAML or JSON), validated; SpecError with file:line:col if not."""
    from cpb.spec.yamlload import load_yaml
    from cpb_runtime.errors import JobSpecError
    from cpb_runtime.protocol import parse_job

    data = load_yaml(path, display=path.name)
    try:
        return parse_job(data)
    except JobSpecError as exc:
        first = exc.errors[0]
        mark = _mark_of(data, first.path)
        more = f" (and {len(exc.errors) - 1} more)" if len(exc.errors) > 1 else ""
        raise SpecError(first.message + more, file=path.name, line=mark.line if mark else 0,
                        column=mark.column if mark else 0,
                        field=_field(first.path)) from None


def _field(path: Sequence[str | int]) -> str:
    from cpb_runtime.errors import format_path

    return format_path(path) if path else ""


def _mark_of(data: Any, path: Sequence[str | int]) -> Mark | None:
    """Where the value at `path` starts, or the nearest enclosing thing that exists."""
    from cpb.spec.yamlload import Located, LocatedList

    node, mark = data, getattr(data, "mark", None)
    for part in path:
        if isinstance(node, Located) and isinstance(part, str) and part in node:
            mark = node.value_marks.get(part, mark)
            node = node[part]
        elif isinstance(node, LocatedList) and isinstance(part, int) and 0 <= part < len(node):
            mark = node.item_marks[part]
            node = node[part]
        else:
            break
    return mark


# -- where the pod's NATS is ------------------------------------------------------

def nats_url(spec: ProjectSpec, pod_name: str) -> str:
    """tls://HOST:PORT (nats:// for a pod without the stock NATS) of the pod's
    published NATS port on this machine."""
    from cpb.resolve.podtls import nats_container
    from cpb.resolve.runtime import NATS_PORT  # the computepods-nats container's port
    from cpb.util import did_you_mean

    pod = spec.pods.get(pod_name)
    if pod is None:
        raise SpecError(f"no pod {pod_name!r} in {spec.file.name}"
                        f"{did_you_mean(pod_name, list(spec.pods))}")
    for port in pod.ports:
        if port.container_port == NATS_PORT and port.protocol.upper() == "TCP":
            # a port published on every address is reached here on loopback
            anywhere = port.host_ip in (None, "", "0.0.0.0")  # noqa: S104 (not a bind)
            host = "127.0.0.1" if anywhere else port.host_ip
            scheme = "tls" if nats_container(pod, spec.images) else "nats"
            return f"{scheme}://{host}:{port.host_port}"
    raise SpecError(f"pod {pod_name!r} publishes no NATS port, so cpb cannot reach it: add "
                    f'ports: ["127.0.0.1:{NATS_PORT}:{NATS_PORT}"] to the pod, or give --nats URL',
                    file=spec.file.name, line=spec.where(f"pods.{pod_name}")[1],
                    column=spec.where(f"pods.{pod_name}")[2], field=f"pods.{pod_name}")


# -- running it --------------------------------------------------------------------

class Unreachable(EnvironmentProblem):
    """The pod's NATS or its MajorDomo does not answer."""


def submitter_settings(spec: ProjectSpec | None, pod_name: str, url: str) -> NatsSettings:
    """How `cpb submit` connects: CP_NATS_CA/CERT/KEY when set, else, for a pod of the
    spec that runs the stock NATS, the project's submitter certificate (made on
    first need; a key others may read is refused)."""
    from cpb.resolve.podtls import plan_tls, project_pki
    from cpb.security.pki import SUBMITTER_ROLE
    from cpb_runtime.settings import NatsSettings

    settings = dataclasses.replace(NatsSettings.from_env(), url=url)
    if settings.cert_file or spec is None or pod_name not in spec.pods:
        return settings
    tls = plan_tls(spec.pods[pod_name], spec.images)
    if tls is None:
        return settings
    pki = project_pki(spec)
    pki.ensure([SUBMITTER_ROLE], server=False)  # the pod's own are `cpb up`'s
    files = pki.files(SUBMITTER_ROLE)
    return dataclasses.replace(settings, ca_file=str(files.ca), cert_file=str(files.cert),
                               key_file=str(files.key))


def submit_job(job: JobSpec, settings: NatsSettings, *, pod: str, progress: ProgressView,
               pod_running: Callable[[], bool | None]) -> tuple[JobOutcome | None, int]:
    """Run the job; (its outcome, exit code). An interrupt cancels it: (None, 130/143/129)."""
    import asyncio
    import logging

    # asyncio's TLS layer warns "returning true from eof_received() has no effect when
    # using ssl" when the server closes a TLS connection to nats-py's protocol: noise to
    # a user, whose job's outcome is said on its own line.
    logging.getLogger("asyncio").setLevel(logging.ERROR)
    return asyncio.run(_submit(job, settings, pod, progress, pod_running))


async def _submit(job: JobSpec, settings: NatsSettings, pod: str, progress: ProgressView,
                  pod_running: Callable[[], bool | None]) -> tuple[JobOutcome | None, int]:
    import asyncio

    from cpb_runtime import Client, JobRefused, LostContact
    from cpb_runtime import Unreachable as NatsUnreachable

    url = settings.url

    loop = asyncio.get_running_loop()
    me = asyncio.current_task()
    assert me is not None
    caught: list[int] = []

    def interrupted(signum: int) -> None:
        if not caught:
            caught.append(signum)
            me.cancel()

    for signum in _SIGNAL_EXITS:
        loop.add_signal_handler(signum, interrupted, signum)
    try:
        try:
            client = await Client.connect(settings)
        except NatsUnreachable as exc:
            running = pod_running()
            if running is False:
                raise Unreachable(f"pod {pod} is not running: start it with `cpb up {pod}`") \
                    from None
            hint = ""
            if settings.cert_file and ("SSL" in str(exc) or "certificate" in str(exc)
                                       or "authoriz" in str(exc).lower()):
                hint = (f" (the pod may run with other certificates, e.g. from before "
                        f"`cpb pki rotate`: `cpb up {pod}` re-creates it)")
            raise Unreachable(f"cannot reach pod {pod}'s NATS at {url}: {exc}{hint}") from None
        async with client:
            try:
                outcome = await client.run(job, on_progress=progress.update)
            except JobRefused as exc:
                raise Unreachable(f"pod {pod} refused the job: {exc.reason}") from None
            except NatsUnreachable as exc:
                raise Unreachable(f"pod {pod}: {exc}") from None
            except LostContact as exc:
                raise Unreachable(f"pod {pod}: lost contact with MajorDomo: {exc}; the job may "
                                  "still be running") from None
    except asyncio.CancelledError:
        if not caught:
            raise
        progress.close()
        return None, _SIGNAL_EXITS[signal.Signals(caught[0])]
    finally:
        for signum in _SIGNAL_EXITS:
            loop.remove_signal_handler(signum)
    progress.close()
    return outcome, EXIT_OK if outcome.succeeded else EXIT_FAILED


# -- what the user sees ------------------------------------------------------------

class ProgressView:
    """Progress on stderr: a rich bar on a terminal, else a plain line per change
    (at most one a second, and one at least every PLAIN_EVERY_S), never control
    characters. Failed tasks are named as they fail."""

    def __init__(self, total: int, stream: TextIO, *, tty: bool) -> None:
        self.total, self.stream, self.tty = total, stream, tty
        self.started = time.monotonic()
        self._last_line = 0.0
        self._last_text = ""
        self._bar: Any = None
        if tty:
            self._bar = _RichBar(total, stream)

    def update(self, step: Progress) -> None:
        for result in step.new_results:
            if not result.succeeded:
                self._say(f"  FAIL {result.name}: {_failure(result)}")
        counts = step.counts
        if self._bar is not None:
            self._bar.update(counts.finished, counts.running, counts.failed)
            return
        text = (f"{counts.finished}/{self.total} tasks done, {counts.running} running, "
                f"{counts.failed} failed")
        now = time.monotonic()
        if step.final or (text != self._last_text and now - self._last_line >= 1.0) \
                or now - self._last_line >= PLAIN_EVERY_S:
            self._last_text, self._last_line = text, now
            self._say(f"{text} ({now - self.started:.0f} s)")

    def _say(self, line: str) -> None:
        if self._bar is not None:
            self._bar.print(line)
        else:
            print(line, file=self.stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


class _RichBar:
    def __init__(self, total: int, stream: TextIO) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self.console = Console(file=stream)
        self.progress = Progress(TextColumn("[bold]job"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[detail]}"), TimeElapsedColumn(),
                                 console=self.console, transient=True)
        self.task = self.progress.add_task("job", total=total, detail="")
        self.progress.start()

    def update(self, done: int, running: int, failed: int) -> None:
        self.progress.update(self.task, completed=done,
                             detail=f"{running} running, {failed} failed")

    def print(self, line: str) -> None:
        self.console.print(line, markup=False, highlight=False)

    def stop(self) -> None:
        self.progress.stop()


def _failure(result: TaskResult) -> str:
    if result.reason:
        return result.reason
    lines = [line.strip() for line in result.stderr_tail.splitlines() if line.strip()]
    # a compiler's message is its "error:" line, not the caret drawn under it
    errors = [line for line in lines if "error" in line.lower()]
    shown = errors[0] if errors else (lines[-1] if lines else "")
    tail = f": {shown}" if shown else ""
    return f"exit code {result.exit_code}{tail}"


def summary_lines(outcome: JobOutcome, seconds: float) -> Iterator[str]:
    counts = outcome.counts
    per_worker: dict[str, int] = {}
    for result in outcome.results:
        if result.worker:
            per_worker[result.worker] = per_worker.get(result.worker, 0) + 1
    workers = ", ".join(f"{name} {n}" for name, n in sorted(per_worker.items()))
    yield (f"job {outcome.job_id}: {outcome.state}: {counts.total} tasks, "
           f"{counts.succeeded} succeeded, {counts.failed} failed"
           + (f", {counts.cancelled} cancelled" if counts.cancelled else "")
           + f" in {seconds:.1f} s" + (f" (tasks per worker: {workers})" if workers else ""))
    for result in outcome.failed:
        yield f"FAILED {result.name} ({_failure(result)}; worker {result.worker or '-'}, " \
              f"attempt {result.attempt})"
        for line in result.stderr_tail.splitlines()[-TAIL_LINES:]:
            yield f"    {line}"


def outcome_json(outcome: JobOutcome, job: JobSpec) -> str:
    tasks = []
    for result in outcome.results:
        task = job.tasks[result.index]
        tasks.append({"name": result.name, "argv": list(task.argv), "state": result.state,
                      "exit_code": result.exit_code, "reason": result.reason,
                      "worker": result.worker, "attempts": result.attempt,
                      "duration_s": round(result.duration_s, 3),
                      "stdout_tail": result.stdout_tail, "stderr_tail": result.stderr_tail})
    return json.dumps({"job": outcome.job_id, "state": outcome.state, "tasks": tasks},
                      indent=2)


def run_submit(spec: ProjectSpec | None, pod: str, job_file: Path, *, url: str | None,
               as_json: bool, progress_mode: str,
               pod_running: Callable[[], bool | None]) -> int:
    """The command's body, once the CLI has parsed its options."""
    job = load_job(job_file)
    if not logging.getLogger().isEnabledFor(logging.DEBUG):
        # the client's connection attempts are summed up in one error line
        logging.getLogger("cpb_runtime").setLevel(logging.CRITICAL)
    if url is None:
        assert spec is not None
        url = nats_url(spec, pod)
    settings = submitter_settings(spec, pod, url)
    tty = progress_mode == "tty" or (progress_mode == "auto" and sys.stderr.isatty())
    view = ProgressView(len(job.tasks), sys.stderr, tty=tty)
    started = time.monotonic()
    outcome, code = submit_job(job, settings, pod=pod, progress=view, pod_running=pod_running)
    if outcome is None:
        click.echo(f"cpb: interrupted: the job on pod {pod} was cancelled (tasks not started "
                   "are dropped, running ones killed)", err=True)
        return code
    if as_json:
        click.echo(outcome_json(outcome, job))
    else:
        for line in summary_lines(outcome, time.monotonic() - started):
            click.echo(line)
    return code


@click.command()
@click.argument("pod")
@click.argument("job_file", metavar="JOBFILE",
                type=click.Path(path_type=Path, dir_okay=False))
@click.option("--json", "as_json", is_flag=True,
              help="Print the outcome as one JSON document (every task's result).")
@click.option("--progress", "progress_mode", type=click.Choice(["auto", "tty", "plain"]),
              default="auto", show_default=True,
              help="Progress on stderr: a bar on a terminal (tty), plain lines (plain).")
@click.option("--nats", "url", metavar="URL",
              help="The pod's NATS (default: the port the pod publishes on this machine).")
@click.pass_obj
def submit(opts: Options, pod: str, job_file: Path, as_json: bool, progress_mode: str,
           url: str | None) -> None:
    """Run JOBFILE's tasks on POD's workers, showing progress; exit 1 if any fails."""
    from cpb.adapters.pods import PodStore
    from cpb.cli.options import make_runner
    from cpb.naming import PROJECT_LABEL
    from cpb.resolve.kube import pod_k8s_name
    from cpb.spec.model import load_spec
    from cpb.state import find_spec_file

    # Only the spec is needed (the pod's published port, whether it runs the stock
    # NATS and so wants the submitter's certificate): no image is looked at.
    spec = None
    if url is None:
        spec = load_spec(opts.spec_file or find_spec_file(Path.cwd()), host_paths=opts.host_paths)
    elif opts.spec_file is not None:
        spec = load_spec(opts.spec_file, host_paths=opts.host_paths)

    def pod_running() -> bool | None:
        """Whether podman runs the pod (asked only when NATS does not answer)."""
        if spec is None or pod not in spec.pods:
            return None
        try:
            store = PodStore(make_runner(), PROJECT_LABEL, spec.project)
            found = store.pods().get(pod_k8s_name(spec.project, pod))
        except EnvironmentProblem:
            return None
        return found is not None and found.status == "Running"

    code = run_submit(spec, pod, job_file, url=url, as_json=as_json,
                      progress_mode=progress_mode, pod_running=pod_running)
    if code:
        sys.exit(code)
