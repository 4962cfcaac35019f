"""The one place cpb starts external programs.

Always an argument list, never a shell string, so no spec value can be
interpreted by a shell. A `Runner` (the protocol; `ProcessRunner` is the real
one) is passed to whatever needs one, so unit tests can substitute it; it
also counts the processes it starts, which the benchmark uses to show that a
no-op starts a constant number of them.
"""

from __future__ import annotations

import collections
import logging
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from cpb.adapters.processes import stop_tree
from cpb.errors import EnvironmentProblem

if TYPE_CHECKING:
    from cpb.state import HeldLock

log = logging.getLogger(__name__)


class GroupRecorder(Protocol):
    def add(self, pid: int) -> None: ...
    def discard(self, pid: int) -> None: ...


class CommandFailed(Exception):
    def __init__(self, args: Sequence[str], returncode: int, output: str,
                 log_file: Path | None) -> None:
        self.args_list, self.returncode = list(args), returncode
        self.output, self.log_file = output, log_file
        self.timed_out = False
        super().__init__(f"{Path(args[0]).name} exited with {returncode}")

    def tail(self, lines: int = 12) -> str:
        return "\n".join(self.output.rstrip().splitlines()[-lines:])


class Runner(Protocol):
    """What runs external programs: `ProcessRunner`, or a fake in unit tests."""

    started: collections.Counter[str]  # processes started, by program name

    def run(self, args: Sequence[str], *, log_file: Path | None = None,
            timeout: float | None = None, stdin: bytes | None = None,
            cwd: Path | None = None, leaves_daemons: bool = False) -> str: ...

    def run_attached(self, args: Sequence[str]) -> int: ...


class ProcessRunner:
    """The real runner: starts each command as its own process group."""

    def __init__(self, env: Mapping[str, str] | None = None,
                 keep_fds: tuple[int, ...] = (), groups: GroupRecorder | None = None) -> None:
        self.env = dict(env) if env is not None else None
        self.started: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()
        # File descriptors every command inherits: the project lock, so that a
        # build cpb started keeps the project locked even if cpb is killed.
        self.keep_fds = keep_fds
        # Told of each command's process group as it starts and ends (the
        # project lock's record, for the run after a kill -9).
        self.groups = groups

    @classmethod
    def holding(cls, lock: HeldLock, env: Mapping[str, str] | None = None) -> ProcessRunner:
        """A runner whose every command runs under the project lock `lock`:
        inherited, and recorded."""
        return cls(env, keep_fds=(lock.fd,), groups=lock)

    def run(self, args: Sequence[str], *, log_file: Path | None = None,
            timeout: float | None = None, stdin: bytes | None = None,
            cwd: Path | None = None, leaves_daemons: bool = False) -> str:
        """Run `args`; return its output (stdout, or stdout+stderr into `log_file`).

        `leaves_daemons`: the command starts processes that outlive it (`podman
        kube play` leaves a conmon per container): they must not inherit the
        project lock, or it stays held as long as the pod runs.

        Raises `CommandFailed` on a non-zero exit and `EnvironmentProblem`
        when the program is not installed.
        """
        self._starting(args)
        pass_fds = () if leaves_daemons else self.keep_fds
        if log_file is not None:
            return self._run_logged(args, log_file, timeout, stdin, cwd, pass_fds)
        code, stdout, stderr = self._spawn(args, stdin, subprocess.PIPE, subprocess.PIPE,
                                           timeout, cwd, None, pass_fds)
        out = stdout.decode(errors="replace")
        if code != 0:
            raise CommandFailed(args, code, out + stderr.decode(errors="replace"), None)
        return out

    def run_attached(self, args: Sequence[str]) -> int:
        """Run `args` with cpb's own stdout and stderr (`cpb logs -f`); its exit code."""
        self._starting(args)
        code, _, _ = self._spawn(args, None, None, None, None, None, None, self.keep_fds)
        return code

    def _starting(self, args: Sequence[str]) -> None:
        """Refuse a program that is not installed; count the one about to start."""
        program = args[0]
        if shutil.which(program, path=(self.env or os.environ).get("PATH")) is None:
            raise EnvironmentProblem(f"'{program}' is not installed or not on PATH "
                                     "(run `cpb doctor`)")
        with self._lock:
            self.started[Path(program).name] += 1
        log.debug("running %s", args)

    def _run_logged(self, args: Sequence[str], log_file: Path, timeout: float | None,
                    stdin: bytes | None, cwd: Path | None,
                    pass_fds: tuple[int, ...]) -> str:
        from cpb.state import open_log  # O_NOFOLLOW: a project may ship .cpb/logs/x -> ~/x

        log_file.parent.mkdir(parents=True, exist_ok=True)
        with os.fdopen(open_log(log_file), "ab", buffering=0) as handle:
            try:
                handle.write(("$ " + " ".join(args) + "\n").encode())
            except OSError as exc:
                exc.filename = str(log_file)  # a full disk: the message names the log
                raise
            code, _, _ = self._spawn(args, stdin, handle, subprocess.STDOUT, timeout, cwd,
                                     log_file, pass_fds)
        if code != 0:
            text = log_file.read_bytes()[-64_000:].decode(errors="replace")
            raise CommandFailed(args, code, text, log_file)
        return ""

    def _spawn(self, args: Sequence[str], stdin: bytes | None, stdout: Any, stderr: Any,
               timeout: float | None, cwd: Path | None, log_file: Path | None,
               pass_fds: tuple[int, ...]) -> tuple[int, bytes, bytes]:
        # A session of its own: Ctrl-C reaches cpb alone, and cpb stops the
        # whole group (cekit *and* the podman it started), so an interrupted
        # build never leaves a podman build running on behind our back.
        proc: subprocess.Popen[bytes] | None = None
        with _running_lock:
            if _control.stopping:
                # cpb is stopping (Ctrl-C, SIGTERM): another thread's next step
                # must not start a command that nobody would stop
                raise CommandsStopped(f"not started, cpb is stopping: {Path(args[0]).name}")
            _control.starting += 1
        try:
            try:
                # An interrupt between the start and the bookkeeping would leave
                # a command nobody stops: it waits until both are done.
                with _interrupts_deferred():
                    proc = subprocess.Popen(
                        list(args), stdout=stdout, stderr=stderr, env=self.env, cwd=cwd,
                        stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                        start_new_session=True, pass_fds=pass_fds)
                    with _running_lock:
                        _running.add(proc)
                    if self.groups is not None:
                        self.groups.add(proc.pid)
            finally:
                with _running_lock:
                    _control.starting -= 1
            out, err = proc.communicate(stdin, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            assert proc is not None
            stop_group(proc)
            raise _timed_out(args, timeout, exc, log_file) from None
        except BaseException:
            if proc is not None:
                stop_group(proc)
            raise
        finally:
            if proc is not None:
                for pipe in (proc.stdin, proc.stdout, proc.stderr):
                    if pipe is not None:
                        pipe.close()
                with _running_lock:
                    _running.discard(proc)
                if self.groups is not None:
                    self.groups.discard(proc.pid)
        return proc.returncode, out or b"", err or b""


_deferral = threading.local()


@contextmanager
def _interrupts_deferred() -> Iterator[None]:
    _deferral.depth = getattr(_deferral, "depth", 0) + 1
    try:
        yield
    finally:
        _deferral.depth -= 1
        pending: BaseException | None = getattr(_deferral, "pending", None)
        if _deferral.depth == 0 and pending is not None:
            _deferral.pending = None
            raise pending


def defer_interrupt(exc: BaseException) -> bool:
    """For a signal handler (it runs in the main thread): True if the main thread is
    starting a command, and `exc` is raised once the command is accounted for."""
    if getattr(_deferral, "depth", 0) > 0:
        _deferral.pending = exc
        return True
    return False


class CommandsStopped(EnvironmentProblem):
    """A command was to start after `stop_running`: the run is being interrupted."""


class _Control:
    stopping = False  # set by stop_running: no new command starts
    starting = 0  # commands between "allowed to start" and "in _running"


_running: set[subprocess.Popen[bytes]] = set()
_running_lock = threading.Lock()
_control = _Control()


def stop_group(proc: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """SIGTERM the command's process group and every process below it (a build
    step's container runs in a session of its own), then SIGKILL what is left
    after `grace` seconds."""
    stop_tree(proc.pid, None, grace, reap=proc.poll)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        log.warning("process %d did not stop", proc.pid)


def stop_running(settle: float = 30.0) -> None:
    """Stop every command still running (other threads' builds after Ctrl-C), and
    start no new one (doit's other threads go on to their next step) until
    `allow_commands`. Returns when no command runs or is being started."""
    with _running_lock:
        _control.stopping = True
    deadline = time.monotonic() + settle
    while True:
        with _running_lock:
            procs, starting = list(_running), _control.starting
        for proc in procs:
            stop_group(proc)  # at once for one already stopped
        if (not procs and not starting) or time.monotonic() > deadline:
            return
        time.sleep(0.05)  # their threads have yet to take them off the list


def allow_commands() -> None:
    """After `stop_running`: a new command line in the same process (tests) may run commands."""
    with _running_lock:
        _control.stopping = False


def _timed_out(args: Sequence[str], timeout: float | None, exc: subprocess.TimeoutExpired,
               log_file: Path | None) -> CommandFailed:
    """A command that hung is a failed command, not a traceback (subprocess killed it)."""
    output = exc.output.decode(errors="replace") if isinstance(exc.output, bytes) else ""
    failed = CommandFailed(args, -1, output, log_file)
    failed.timed_out = True
    failed.args = (f"{Path(args[0]).name} did not finish within {timeout or exc.timeout:g} s",)
    return failed
