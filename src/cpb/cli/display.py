"""What a build shows while it runs: plain lines, or a live display on a terminal.

The build reporter (tasks/doitapp.py) tells a display when a task starts and
finishes. `PlainDisplay` writes the lines cpb always wrote (`  ... TASK`,
`  ok  TASK (1.2 s)`, `  FAIL TASK: ...`) and, every 30 s, one line per task
still running with the last line of its log; it never writes a control
character, so CI logs and pipes stay clean. `LiveDisplay` (rich, only on a
terminal) keeps one line per running task with its elapsed time and the last
line of its log, and a total, below the finished tasks that scroll above.
"""

from __future__ import annotations

import io
import logging
import os
import re
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, Protocol

PROGRESS_MODES = ("auto", "tty", "plain")
STILL_RUNNING_EVERY = 30.0  # seconds between "still running" lines in plain mode
_TAIL_BYTES = 8192
# CSI (colours, cursor moves) and OSC (titles, links) sequences in a tool's output
_ESCAPES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b.")

LogFor = Callable[[str], "Path | None"]


class Display(Protocol):
    def started(self, task: str) -> None: ...
    def line(self, text: str) -> None: ...  # a finished task's line, or the summary
    def finished(self, task: str, failed: bool) -> None: ...
    def close(self) -> None: ...


def printable(text: str) -> str:
    """`text` without escape sequences or control characters (tabs become spaces)."""
    text = _ESCAPES.sub("", text).replace("\t", " ")
    return "".join(c for c in text if c.isprintable())


def last_log_line(path: Path | None, since: float = 0.0) -> str:
    """The last non-empty line of a log (after its last \\r: a progress bar's
    current state), printable; "" when there is none written since `since`."""
    if path is None:
        return ""
    try:
        with path.open("rb") as handle:
            if os.fstat(handle.fileno()).st_mtime < since:
                return ""  # the previous run's log, not yet started again
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - _TAIL_BYTES))
            data = handle.read()
    except OSError:
        return ""
    for raw in reversed(re.split(r"[\r\n]", data.decode(errors="replace"))):
        line = printable(raw).strip()
        if line:
            return line
    return ""


def elapsed(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


class _Running:
    """The tasks running now, their start times and the counts for the total."""

    def __init__(self, total: int, log_for: LogFor, clock: Callable[[], float]) -> None:
        self.total, self.log_for, self.clock = total, log_for, clock
        self.tasks: dict[str, tuple[float, float]] = {}  # task: (monotonic start, wall start)
        self.finished = self.failed = 0
        self.lock = threading.Lock()

    def start(self, task: str) -> None:
        with self.lock:
            self.tasks[task] = (self.clock(), time.time())

    def finish(self, task: str, failed: bool) -> None:
        with self.lock:
            self.tasks.pop(task, None)
            self.finished += 1
            self.failed += failed

    def snapshot(self) -> list[tuple[str, float, str]]:
        """(task, seconds running, last log line) for each running task, oldest first."""
        with self.lock:
            items = list(self.tasks.items())
        now = self.clock()
        return [(task, now - start, last_log_line(self.log_for(task), wall - 1.0))
                for task, (start, wall) in items]

    def total_line(self) -> str:
        with self.lock:
            return (f"{self.finished}/{self.total} tasks, {len(self.tasks)} running, "
                    f"{self.failed} failed")


class PlainDisplay:
    """Line by line, for pipes and CI: no control characters ever."""

    def __init__(self, out: IO[str], log_for: LogFor, *, total: int = 0,
                 every: float = STILL_RUNNING_EVERY, ticker: bool = True,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """`every`: seconds of running between two lines for one task; `ticker`:
        check once a second on a thread (tests call `tick()` themselves)."""
        self.out, self.every = out, every
        self.running = _Running(total, log_for, clock)
        self._said: dict[str, int] = {}  # task: "still running" lines written
        self._write_lock = threading.Lock()
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        if ticker:
            self._ticker = threading.Thread(target=self._tick_loop, args=(min(1.0, every),),
                                            name="cpb-progress", daemon=True)
            self._ticker.start()

    def _write(self, text: str) -> None:
        with self._write_lock:
            self.out.write(text + "\n")
            self.out.flush()

    def started(self, task: str) -> None:
        self.running.start(task)
        self._write(f"  ... {task}")

    def line(self, text: str) -> None:
        self._write(printable(text) if "\n" not in text else
                    "\n".join(printable(t) for t in text.split("\n")))

    def finished(self, task: str, failed: bool) -> None:
        self.running.finish(task, failed)

    def tick(self) -> None:
        """A line for each task that has run another `every` seconds since its last one."""
        for task, seconds, last in self.running.snapshot():
            due = int(seconds // self.every)
            if due > self._said.get(task, 0):
                self._said[task] = due
                self._write(f"  ... {task} still running ({elapsed(seconds)})"
                            + (f": {last}" if last else ""))

    def _tick_loop(self, every: float) -> None:
        while not self._stop.wait(every):
            self.tick()

    def close(self) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join(timeout=5)


class LiveDisplay:
    """A live area on a terminal (rich): running tasks and a total; the
    finished tasks' lines print above it and scroll away."""

    def __init__(self, out: IO[str], log_for: LogFor, *, total: int = 0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        from rich.console import Console
        from rich.live import Live

        self.running = _Running(total, log_for, clock)
        self.console = Console(file=out, force_terminal=True, highlight=False,
                               soft_wrap=False)
        # redirect_*: a log warning printed while the area is shown goes above it
        self.live = Live(self, console=self.console, refresh_per_second=4, transient=True,
                         redirect_stdout=False, redirect_stderr=False)
        self.live.start()
        # cpb's own warnings (logging, to the terminal) would land inside the live
        # area and leave a stale copy of it behind: print them above it instead.
        self._handlers = [h for h in logging.getLogger().handlers
                          if isinstance(h, logging.StreamHandler) and _is_tty(h.stream)]
        self._streams = [h.setStream(_LineWriter(self.line)) for h in self._handlers]

    def __rich__(self) -> Any:
        from rich.console import Group
        from rich.text import Text

        lines = []
        for task, seconds, last in self.running.snapshot():
            text = Text(no_wrap=True, overflow="ellipsis")
            text.append("  ⠿ ", style="cyan")
            text.append(task, style="bold")
            text.append(f"  {elapsed(seconds)}", style="yellow")
            if last:
                text.append(f"  {last}", style="dim")
            lines.append(text)
        total = Text(no_wrap=True, overflow="ellipsis")
        total.append(self.running.total_line(), style="bold")
        lines.append(total)
        return Group(*lines)

    def started(self, task: str) -> None:
        self.running.start(task)
        self.live.refresh()

    def line(self, text: str) -> None:
        from rich.text import Text

        style = "red" if text.startswith("  FAIL") else None
        # Text, never markup: task names and messages come from the project
        self.live.console.print(Text(printable(text) if "\n" not in text else
                                     "\n".join(printable(t) for t in text.split("\n")),
                                     style=style or ""))

    def finished(self, task: str, failed: bool) -> None:
        self.running.finish(task, failed)
        self.live.refresh()

    def close(self) -> None:
        self.live.stop()
        for handler, stream in zip(self._handlers, self._streams, strict=True):
            handler.setStream(stream)
        self._handlers, self._streams = [], []


class _LineWriter(io.TextIOBase):
    """A stream that hands each complete line to `emit`."""

    def __init__(self, emit: Callable[[str], None]) -> None:
        self.emit, self.buffer = emit, ""

    def write(self, text: str) -> int:
        self.buffer += text
        while "\n" in self.buffer:
            line, self.buffer = self.buffer.split("\n", 1)
            self.emit(line)
        return len(text)


def _is_tty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def progress_option(command: Any) -> Any:
    """The --progress option of the commands that run tasks."""
    import click

    return click.option(
        "--progress", type=click.Choice(PROGRESS_MODES), default="auto", show_default=True,
        help="tty: a live display of the running tasks; plain: one line per event "
             "(and one every 30 s per running task); auto: tty on a terminal.")(command)


def choose_mode(mode: str, out: IO[str]) -> str:
    """"tty" or "plain" for --progress MODE writing to `out`."""
    if mode != "auto":
        return mode
    return "tty" if _is_tty(out) and os.environ.get("TERM", "") != "dumb" else "plain"


def make_display(mode: str, log_for: LogFor, total: int,
                 out: IO[str] | None = None) -> Display:
    out = out or sys.stdout
    if choose_mode(mode, out) == "tty":
        return LiveDisplay(out, log_for, total=total)
    return PlainDisplay(out, log_for, total=total)
