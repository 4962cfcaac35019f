"""Every environment variable of every runtime component, read in one place.

docs/runtime.md lists them; a bad value is a ConfigError naming the variable.
"""

from __future__ import annotations

import os
import re
import secrets
import socket
import ssl
from collections.abc import Mapping
from dataclasses import dataclass

from cpb_runtime.errors import ConfigError
from cpb_runtime.protocol import NAME_RE, sanitize_name

DEFAULT_NATS_URL = "nats://127.0.0.1:4222"


def _float(env: Mapping[str, str], name: str, default: float, *, minimum: float = 0.0) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r}: not a number") from None
    if not value > minimum:
        raise ConfigError(f"{name}={raw!r}: must be above {minimum:g}")
    return value


def _int(env: Mapping[str, str], name: str, default: int, *, minimum: int = 1) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r}: not a whole number") from None
    if value < minimum:
        raise ConfigError(f"{name}={raw!r}: must be at least {minimum}")
    return value


@dataclass(frozen=True)
class NatsSettings:
    """How every component reaches NATS: CP_NATS_URL, and for TLS (issue 14)
    CP_NATS_CA (CA bundle), CP_NATS_CERT and CP_NATS_KEY (client certificate)."""

    url: str = DEFAULT_NATS_URL
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> NatsSettings:
        cert, key = env.get("CP_NATS_CERT") or None, env.get("CP_NATS_KEY") or None
        if bool(cert) != bool(key):
            raise ConfigError("CP_NATS_CERT and CP_NATS_KEY must be set together")
        return cls(url=env.get("CP_NATS_URL") or DEFAULT_NATS_URL,
                   ca_file=env.get("CP_NATS_CA") or None, cert_file=cert, key_file=key)

    @property
    def uses_tls(self) -> bool:
        return bool(self.ca_file or self.cert_file or self.url.startswith("tls://"))

    def tls_context(self) -> ssl.SSLContext | None:
        if not self.uses_tls:
            return None
        try:
            context = ssl.create_default_context(cafile=self.ca_file)
            if self.cert_file and self.key_file:
                context.load_cert_chain(self.cert_file, self.key_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"cannot load the TLS files for NATS: {exc}") from None
        return context


def _default_slots() -> int:
    try:
        return len(os.sched_getaffinity(0))  # a container's cpuset, not the host's count
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


@dataclass(frozen=True)
class WorkerSettings:
    kind: str
    name: str
    slots: int
    heartbeat_s: float = 2.0
    drain_s: float = 8.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ,
                 default_kind: str | None = None) -> WorkerSettings:
        """CP_WORKER_KIND (else CP_CONTAINER_NAME without its "-N" replica suffix, else
        ``default_kind``), CP_WORKER_NAME (else CP_CONTAINER_NAME, else hostname and a
        random suffix), CP_WORKER_SLOTS (else the CPUs this process may use),
        CP_HEARTBEAT_INTERVAL (s) and CP_WORKER_DRAIN_TIMEOUT (s after SIGTERM)."""
        container = env.get("CP_CONTAINER_NAME", "").strip()
        kind = env.get("CP_WORKER_KIND", "").strip()
        if not kind and container:
            kind = re.sub(r"-\d+$", "", container)
        kind = kind or (default_kind or "")
        if not kind:
            raise ConfigError("set CP_WORKER_KIND to the kind of tasks this worker runs")
        if not NAME_RE.match(kind):
            raise ConfigError(f"worker kind {kind!r} is not a valid name: use letters, "
                              "digits, '-' and '_'")
        name = env.get("CP_WORKER_NAME", "").strip() or container
        if not name:
            name = f"{socket.gethostname()}-{secrets.token_hex(2)}"
        return cls(kind=kind, name=sanitize_name(name),
                   slots=_int(env, "CP_WORKER_SLOTS", _default_slots()),
                   heartbeat_s=_float(env, "CP_HEARTBEAT_INTERVAL", 2.0),
                   drain_s=_float(env, "CP_WORKER_DRAIN_TIMEOUT", 8.0, minimum=-1e-9))


@dataclass(frozen=True)
class MajorDomoSettings:
    ack_wait_s: float = 10.0
    max_deliver: int = 3
    job_ttl_s: float = 7 * 24 * 3600.0
    startup_grace_s: float = 6.0
    cancel_grace_s: float = 20.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> MajorDomoSettings:
        """CP_ACK_WAIT (s a task may go without a sign of life before it is redelivered),
        CP_MAX_DELIVER (deliveries of a task before it is failed as "worker lost"),
        CP_JOB_TTL (s job records are kept), CP_STARTUP_GRACE (s after a start during
        which a kind without heartbeats is not refused yet) and CP_CANCEL_GRACE (s
        a cancelled running task may take to report)."""
        ack_wait = _float(env, "CP_ACK_WAIT", 10.0)
        return cls(ack_wait_s=ack_wait,
                   max_deliver=_int(env, "CP_MAX_DELIVER", 3),
                   job_ttl_s=_float(env, "CP_JOB_TTL", 7 * 24 * 3600.0),
                   startup_grace_s=_float(env, "CP_STARTUP_GRACE", 6.0, minimum=-1e-9),
                   cancel_grace_s=_float(env, "CP_CANCEL_GRACE", 2 * ack_wait))


def configure_logging(component: str, env: Mapping[str, str] = os.environ) -> None:
    """One line per event on stderr; CP_LOG_LEVEL (DEBUG, INFO, WARNING...) sets the level."""
    import logging

    level = env.get("CP_LOG_LEVEL", "INFO").upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise ConfigError(f"CP_LOG_LEVEL={level!r}: use DEBUG, INFO, WARNING or ERROR")
    logging.basicConfig(level=level,
                        format=f"%(asctime)s {component} %(levelname)s %(message)s")
