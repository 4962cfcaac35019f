"""The one place cpb starts external programs.

Always an argument list, never a shell string, so no spec value can be
interpreted by a shell. A `Runner` is passed to whatever needs one, so unit
tests can substitute it; it also counts the processes it starts, which the
benchmark uses to show that a no-op starts a constant number of them.
"""

from __future__ import annotations

import collections
import logging
import os
import shutil
import subprocess
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

from .errors import EnvironmentProblem

log = logging.getLogger(__name__)


class CommandFailed(Exception):
    def __init__(self, args: Sequence[str], returncode: int, output: str,
                 log_file: Path | None) -> None:
        self.args_list, self.returncode, self.output, self.log_file = list(args), returncode, output, log_file
        super().__init__(f"{Path(args[0]).name} exited with {returncode}")

    def tail(self, lines: int = 12) -> str:
        return "\n".join(self.output.rstrip().splitlines()[-lines:])


class Runner:
    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        self.env = dict(env) if env is not None else None
        self.started: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()

    def run(self, args: Sequence[str], *, log_file: Path | None = None,
            timeout: float | None = None, stdin: bytes | None = None,
            cwd: Path | None = None) -> str:
        """Run `args`; return its output (stdout, or stdout+stderr into `log_file`).

        Raises `CommandFailed` on a non-zero exit and `EnvironmentProblem`
        when the program is not installed.
        """
        program = args[0]
        if shutil.which(program, path=(self.env or os.environ).get("PATH")) is None:
            raise EnvironmentProblem(f"'{program}' is not installed or not on PATH "
                                     "(run `cpb doctor`)")
        with self._lock:
            self.started[Path(program).name] += 1
        log.debug("running %s", args)
        if log_file is not None:
            return self._run_logged(args, log_file, timeout, stdin, cwd)
        try:
            proc = subprocess.run(list(args), input=stdin, capture_output=True, timeout=timeout,
                                  env=self.env, cwd=cwd, check=False)
        except subprocess.TimeoutExpired as exc:
            raise _timed_out(args, timeout, exc, None) from None
        out = proc.stdout.decode(errors="replace")
        if proc.returncode != 0:
            raise CommandFailed(args, proc.returncode, out + proc.stderr.decode(errors="replace"),
                                None)
        return out

    def _run_logged(self, args: Sequence[str], log_file: Path, timeout: float | None,
                    stdin: bytes | None, cwd: Path | None) -> str:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        with log_file.open("ab") as handle:
            handle.write(("$ " + " ".join(args) + "\n").encode())
            handle.flush()
            try:
                proc = subprocess.run(list(args), input=stdin, stdout=handle,
                                      stderr=subprocess.STDOUT, timeout=timeout, env=self.env,
                                      cwd=cwd, check=False)
            except subprocess.TimeoutExpired as exc:
                raise _timed_out(args, timeout, exc, log_file) from None
        if proc.returncode != 0:
            text = log_file.read_bytes()[-64_000:].decode(errors="replace")
            raise CommandFailed(args, proc.returncode, text, log_file)
        return ""


def _timed_out(args: Sequence[str], timeout: float | None, exc: subprocess.TimeoutExpired,
               log_file: Path | None) -> CommandFailed:
    """A command that hung is a failed command, not a traceback (subprocess killed it)."""
    output = exc.output.decode(errors="replace") if isinstance(exc.output, bytes) else ""
    failed = CommandFailed(args, -1, output, log_file)
    failed.args = (f"{Path(args[0]).name} did not finish within {timeout or exc.timeout:g} s",)
    return failed
