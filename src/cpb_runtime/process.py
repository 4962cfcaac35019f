"""Run one task as a process: an argument list (never a shell), its own session,
its own timeout, the tails of its outputs kept.

The task runs in a new session (its own process group), so a timeout or a
cancellation kills everything it started, and whatever it leaves behind when
it exits is killed too: a task must not outlive its result.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cpb_runtime.protocol import TAIL_BYTES

_PIPE_GRACE_S = 2.0  # how long to read pipes still held open by an escaped grandchild


@dataclass(frozen=True)
class ProcessOutcome:
    exit_code: int | None  # None: never started; negative: killed by that signal
    duration_s: float
    stdout_tail: bytes
    stderr_tail: bytes
    reason: str = ""  # empty when the process ran to its own end

    @property
    def succeeded(self) -> bool:
        return self.exit_code == 0 and not self.reason


def task_environment(task_env: Mapping[str, str],
                     base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The worker's environment without its own CP_* settings (NATS URL, key files),
    with the task's variables on top."""
    base = os.environ if base is None else base
    env = {k: v for k, v in base.items() if not k.startswith("CP_")}
    env.update(task_env)
    return env


def scrub_environment() -> None:
    """Take the CP_* settings out of this process's environment once they are read,
    so that tasks inherit the rest as is (``env=None``: nothing to copy per task)."""
    for name in [k for k in os.environ if k.startswith("CP_")]:
        del os.environ[name]


def _kill_group(pgid: int) -> None:
    """SIGKILL a task's process group (its leader's pid is the group id)."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass  # the group is empty: the task and everything it started are gone
    except PermissionError:  # a member changed its credentials: at least the leader
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pgid, signal.SIGKILL)


class TaskProcess:
    """One run of a task; ``kill(reason)`` ends it early from another coroutine.

    Not asyncio's subprocess transports: a plain Popen whose pipes and exit
    (a pidfd on Linux) are watched by the event loop directly. That is less work
    per task, and its exit is seen even while a leftover grandchild holds the
    pipes open (asyncio's wait() waits for the pipes too).
    """

    def __init__(self, argv: Sequence[str], *, cwd: str | None,
                 env: Mapping[str, str] | None, timeout: float) -> None:
        """``env`` None: this process's own environment."""
        self.argv = tuple(argv)
        self.cwd = cwd
        self.env = dict(env) if env is not None else None
        self.timeout = timeout
        self.pid: int | None = None
        self._kill_reason = ""
        self._killed = asyncio.Event()

    def kill(self, reason: str) -> None:
        if not self._kill_reason:
            self._kill_reason = reason
        self._killed.set()

    async def run(self) -> ProcessOutcome:
        started = time.monotonic()
        if self._killed.is_set():
            return ProcessOutcome(None, 0.0, b"", b"", self._kill_reason)
        try:
            proc = subprocess.Popen(
                self.argv, cwd=self.cwd, env=self.env, stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        except OSError as exc:
            return ProcessOutcome(None, time.monotonic() - started, b"", b"",
                                  self._start_failure(exc))
        self.pid = proc.pid
        loop = asyncio.get_running_loop()
        assert proc.stdout is not None and proc.stderr is not None
        out = _TailReader(loop, proc.stdout.fileno())
        err = _TailReader(loop, proc.stderr.fileno())
        exit_watch = _ExitWatch(loop, proc)
        reason = ""
        try:
            reason = await self._wait(exit_watch.exited)
        finally:
            # Whatever happened (exit, timeout, kill, our own cancellation), nothing
            # of the task's process group survives it.
            _kill_group(proc.pid)
            try:
                await asyncio.shield(exit_watch.exited)
                pipes: list[asyncio.Future[None]] = [out.closed, err.closed]
                await asyncio.wait(pipes, timeout=_PIPE_GRACE_S)  # an escaped daemon?
            finally:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(5)  # it has exited (or been killed): this reaps it
                exit_watch.close()
                out.close()
                err.close()
                proc.stdout.close()
                proc.stderr.close()
        return ProcessOutcome(proc.returncode, time.monotonic() - started,
                              out.tail(), err.tail(), reason)

    async def _wait(self, exited: asyncio.Future[None]) -> str:
        killed = asyncio.ensure_future(self._killed.wait())
        either: set[asyncio.Future[Any]] = {exited, killed}
        try:
            done, _ = await asyncio.wait(either, timeout=self.timeout,
                                         return_when=asyncio.FIRST_COMPLETED)
        finally:
            killed.cancel()
            await asyncio.gather(killed, return_exceptions=True)
        if exited in done:
            return ""
        if killed in done:
            return self._kill_reason
        return f"timed out after {self.timeout:g} s"

    def _start_failure(self, exc: OSError) -> str:
        program = self.argv[0][:300]  # a reason is one line, not a copy of the task
        if self.cwd and exc.filename == self.cwd:
            return f"could not start: no such working directory: {self.cwd[:300]}"
        if isinstance(exc, FileNotFoundError):
            return f"could not start: executable not found: {program}"
        if isinstance(exc, PermissionError):
            return f"could not start: permission denied: {program}"
        return f"could not start: {exc.strerror or exc}"


class _TailReader:
    """Reads a pipe as data comes, keeping the last TAIL_BYTES."""

    def __init__(self, loop: asyncio.AbstractEventLoop, fd: int) -> None:
        self.loop = loop
        self.fd = fd
        self.data = bytearray()
        self.closed: asyncio.Future[None] = loop.create_future()
        os.set_blocking(fd, False)
        loop.add_reader(fd, self._readable)

    def _readable(self) -> None:
        try:
            chunk = os.read(self.fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if chunk:
            self.data += chunk
            if len(self.data) > 2 * TAIL_BYTES:
                del self.data[:-TAIL_BYTES]
        else:
            self.close()

    def close(self) -> None:
        if not self.closed.done():
            self.loop.remove_reader(self.fd)
            self.closed.set_result(None)

    def tail(self) -> bytes:
        return bytes(self.data[-TAIL_BYTES:])


class _ExitWatch:
    """A future done when the process exits: a pidfd in the event loop (Linux 5.3+),
    else polling."""

    def __init__(self, loop: asyncio.AbstractEventLoop, proc: subprocess.Popen[bytes]) -> None:
        self.loop = loop
        self.proc = proc
        self.exited: asyncio.Future[None] = loop.create_future()
        self.pidfd: int | None = None
        self.poller: asyncio.Task[None] | None = None
        try:
            self.pidfd = os.pidfd_open(proc.pid)
        except (AttributeError, OSError):
            self.poller = loop.create_task(self._poll())
        else:
            loop.add_reader(self.pidfd, self._done)

    def _done(self) -> None:
        if not self.exited.done():
            self.exited.set_result(None)

    async def _poll(self) -> None:
        delay = 0.005
        while self.proc.poll() is None:
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.1)
        self._done()

    def close(self) -> None:
        if self.pidfd is not None:
            self.loop.remove_reader(self.pidfd)
            os.close(self.pidfd)
            self.pidfd = None
        if self.poller is not None:
            self.poller.cancel()
