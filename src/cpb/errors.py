"""One error hierarchy; each error knows the exit code the CLI turns it into."""

from __future__ import annotations

# Documented exit codes (README "Exit codes").
EXIT_OK = 0
EXIT_FAILED = 1  # a task failed, or `plan --exit-code` found pending work
EXIT_SPEC = 2  # bad cpb.yaml or bad command-line usage
EXIT_ENVIRONMENT = 3  # podman/cekit missing or broken, registry, lock, disk full
EXIT_INTERRUPTED = 130  # Ctrl-C (SIGINT): 128 + 2
EXIT_TERMINATED = 143  # SIGTERM: 128 + 15
EXIT_HANGUP = 129  # SIGHUP: 128 + 1
INTERRUPT_EXITS = (EXIT_INTERRUPTED, EXIT_TERMINATED, EXIT_HANGUP)


class CpbError(Exception):
    """Base of every error cpb reports to a user as one line."""

    exit_code = EXIT_FAILED


class SpecError(CpbError):
    """cpb.yaml is malformed or inconsistent; the message names file:line:col."""

    exit_code = EXIT_SPEC

    def __init__(self, message: str, *, file: str = "", line: int = 0,
                 column: int = 0, field: str = "") -> None:
        self.file, self.line, self.column, self.field = file, line, column, field
        self.reason = message
        where = file
        if file and line:
            where = f"{file}:{line}:{column}" if column else f"{file}:{line}"
        prefix = f"{where}: " if where else ""
        if field:
            prefix += f"{field}: "
        super().__init__(_one_line(prefix + message))


def _one_line(text: str) -> str:
    """Spec values end up in messages: a newline in a key must not split the error line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class GraphError(SpecError):
    """The task graph cannot be built (a cycle, a missing reference)."""


class EnvironmentProblem(CpbError):
    """A required program is missing or broken on this machine."""

    exit_code = EXIT_ENVIRONMENT


class StateLocked(EnvironmentProblem):
    """Another cpb process holds the project lock."""


class UnsafeState(CpbError):
    """`.cpb/` holds a symbolic link where cpb writes (a project can ship one)."""

    exit_code = EXIT_SPEC


class BuildError(CpbError):
    """A task's external command failed; the message names its log file."""

    exit_code = EXIT_FAILED


class StateWriteError(EnvironmentProblem):
    """A file under .cpb/ could not be written (the old one, if any, is intact)."""


class DiskFull(StateWriteError):
    """No space left on the device that holds .cpb/."""
