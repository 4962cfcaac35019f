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
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

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


async def _read_tail(stream: asyncio.StreamReader | None, into: bytearray) -> None:
    if stream is None:
        return
    while chunk := await stream.read(65536):
        into += chunk
        if len(into) > 2 * TAIL_BYTES:
            del into[:-TAIL_BYTES]


async def _exit_status(proc: asyncio.subprocess.Process) -> None:
    delay = 0.01
    while proc.returncode is None:
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.2)


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


class TaskProcess:
    """One run of a task; ``kill(reason)`` ends it early from another coroutine."""

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
            proc = await asyncio.create_subprocess_exec(
                *self.argv, cwd=self.cwd, env=self.env, stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                start_new_session=True)
        except OSError as exc:
            return ProcessOutcome(None, time.monotonic() - started, b"", b"",
                                  self._start_failure(exc))
        self.pid = proc.pid
        out, err = bytearray(), bytearray()
        readers = [asyncio.ensure_future(_read_tail(proc.stdout, out)),
                   asyncio.ensure_future(_read_tail(proc.stderr, err))]
        reason = ""
        try:
            reason = await self._wait(proc)
        finally:
            # Whatever happened (exit, timeout, kill, our own cancellation), nothing
            # of the task's process group survives it.
            _kill_group(proc.pid)
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await asyncio.shield(proc.wait())
            _done, pending = await asyncio.wait(readers, timeout=_PIPE_GRACE_S)
            for reader in pending:
                reader.cancel()
            await asyncio.gather(*readers, return_exceptions=True)
        return ProcessOutcome(proc.returncode, time.monotonic() - started,
                              bytes(out[-TAIL_BYTES:]), bytes(err[-TAIL_BYTES:]), reason)

    async def _wait(self, proc: asyncio.subprocess.Process) -> str:
        exited = asyncio.ensure_future(proc.wait())
        # asyncio's wait() also waits for the pipes to close, which a leftover
        # grandchild can hold open for ever: watch the exit status as well.
        polled = asyncio.ensure_future(_exit_status(proc))
        killed = asyncio.ensure_future(self._killed.wait())
        try:
            done, _ = await asyncio.wait({exited, polled, killed}, timeout=self.timeout,
                                         return_when=asyncio.FIRST_COMPLETED)
        finally:
            for fut in (exited, polled, killed):
                if not fut.done():
                    fut.cancel()
            await asyncio.gather(exited, polled, killed, return_exceptions=True)
        if exited in done or polled in done:
            return ""
        if killed in done:
            return self._kill_reason
        return f"timed out after {self.timeout:g} s"

    def _start_failure(self, exc: OSError) -> str:
        if self.cwd and exc.filename == self.cwd:
            return f"could not start: no such working directory: {self.cwd}"
        if isinstance(exc, FileNotFoundError):
            return f"could not start: executable not found: {self.argv[0]}"
        if isinstance(exc, PermissionError):
            return f"could not start: permission denied: {self.argv[0]}"
        return f"could not start: {exc.strerror or exc}"
