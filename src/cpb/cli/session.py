"""What every cpb command that changes things shares: signals and the project lock.

SIGTERM (CI cancelling a job, `timeout`, systemd, Kubernetes) and SIGHUP (a
closed terminal) are handled like Ctrl-C: the main thread gets an exception,
the command stops the process groups it started (runner.stop_running), says
one line and exits 128 + the signal's number.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import TYPE_CHECKING

from cpb.adapters.runner import defer_interrupt
from cpb.errors import EXIT_HANGUP, EXIT_INTERRUPTED, EXIT_TERMINATED

if TYPE_CHECKING:
    from cpb.project import Project
    from cpb.state import HeldLock

INTERRUPTED = "interrupted; everything finished so far is kept"
TERMINATED = "terminated; everything finished so far is kept"
_CAUGHT = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP: a KeyboardInterrupt, so every path that cleans up after
    Ctrl-C (the runner stopping its command's group, doit writing its
    database) does the same for these."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextmanager
def signals_interrupt() -> Iterator[None]:
    """While inside, SIGTERM and SIGHUP raise `Terminated` in the main thread, and
    SIGINT KeyboardInterrupt as usual; once (a second signal while cpb stops
    its commands is not a second exception), and not while the runner is
    between starting a command and recording it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    fired: list[int] = []

    def handler(signum: int, frame: FrameType | None) -> None:
        if fired:
            return
        fired.append(signum)
        downloads = sys.modules.get("cpb.adapters.artifacts")  # imported if it downloads
        if downloads is not None:
            downloads.cancel_downloads()  # threads blocked in a read, which no signal reaches
        exc = KeyboardInterrupt() if signum == signal.SIGINT else Terminated(signum)
        if not defer_interrupt(exc):
            raise exc

    previous = {sig: signal.signal(sig, handler) for sig in _CAUGHT}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def interruption(exc: BaseException) -> tuple[int, str]:
    """(exit code, message) for an interrupt; click wraps it in an Abort."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, Terminated):
            code = EXIT_TERMINATED if seen.signum == signal.SIGTERM else EXIT_HANGUP
            return code, TERMINATED
        seen = seen.__context__
    return EXIT_INTERRUPTED, INTERRUPTED


@contextmanager
def project_lock(project: Project, *, wait: bool = True,
                 say: Callable[[str], None] | None = None,
                 check: bool = True) -> Iterator[HeldLock]:
    """Hold the project lock, with its messages (`cpb clean`; a build takes it in
    cpb.workflow, with a runner whose commands run under it).

    `check`: first refuse a .cpb/ with links where cpb writes (all but `cpb clean`).
    """
    import click  # not on the fast path, which needs no messages

    waited: list[str] = []
    say = say or (lambda text: click.echo(text, err=True))

    def waiting(holder: str) -> None:
        waited.append(holder)
        say(f"waiting for another cpb run in this project ({holder}) to finish...")

    with project.state.lock(wait=wait, on_wait=waiting, on_ended=say, check=check) as held:
        if waited:
            # the other run changed local storage: what we saw before waiting is stale
            project.store.invalidate()
        yield held
