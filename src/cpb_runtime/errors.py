"""One error hierarchy for the runtime; every message is one line a user can act on."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

PathPart = str | int


def format_path(path: Sequence[PathPart]) -> str:
    """``("tasks", 3, "argv")`` -> ``tasks[3].argv``; the empty path is the document."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else part
    return text or "(top level)"


@dataclass(frozen=True)
class FieldError:
    """One problem in a job or a message, at a field path (a tuple of keys and indexes).

    cpb's loader turns ``path`` into file:line:col; the runtime only knows the path.
    """

    path: tuple[PathPart, ...]
    message: str

    def __str__(self) -> str:
        return f"{format_path(self.path)}: {self.message}"


class CpRuntimeError(Exception):
    """Base of every error the runtime reports."""


class ConfigError(CpRuntimeError):
    """A component's environment is wrong (a bad CP_* variable, unreadable TLS files)."""


class ProtocolError(CpRuntimeError):
    """A message does not follow the protocol (bad JSON, wrong version, bad field)."""


class JobSpecError(CpRuntimeError):
    """A job (file or request) is invalid; ``errors`` name each field path."""

    def __init__(self, errors: Sequence[FieldError]) -> None:
        self.errors = tuple(errors)
        first = str(self.errors[0]) if self.errors else "invalid job"
        more = f" (and {len(self.errors) - 1} more)" if len(self.errors) > 1 else ""
        super().__init__(first + more)


class JobRefused(CpRuntimeError):
    """MajorDomo refused a job (no live worker of its kind, invalid job, ...)."""

    def __init__(self, reason: str, errors: Sequence[FieldError] = ()) -> None:
        self.reason = reason
        self.errors = tuple(errors)
        super().__init__(reason)


class Unreachable(CpRuntimeError):
    """NATS or MajorDomo cannot be reached."""


class LostContact(CpRuntimeError):
    """MajorDomo stopped answering about a job for longer than the client's patience."""

    def __init__(self, job_id: str, message: str) -> None:
        self.job_id = job_id
        super().__init__(message)


class UnknownJob(CpRuntimeError):
    """MajorDomo does not know the job (never submitted, or expired from its store)."""
