"""The one way every runtime component connects to NATS.

Long-lived components (MajorDomo, workers) wait for NATS as long as it takes
and reconnect forever; a client gives up quickly when NATS is unreachable,
then rides out short outages. TLS (issue 14) is configuration: CP_NATS_CA,
CP_NATS_CERT, CP_NATS_KEY (see settings.NatsSettings).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from nats.aio.client import Client as NATS

from cpb_runtime.errors import Unreachable
from cpb_runtime.settings import NatsSettings

log = logging.getLogger("cpb_runtime.connect")


def _callbacks(name: str, nc: NATS, state: dict[str, Any], quiet_start: bool) -> dict[str, Any]:
    async def error_cb(exc: Exception) -> None:
        state["last"] = exc
        if quiet_start and not state.get("connected"):
            return  # a client's failure to connect is its one-line Unreachable
        # A permission violation reaches only this callback: never hide it.
        state["errors"] += 1
        if state["errors"] <= 3 or state["errors"] % 30 == 0 or "ermission" in str(exc):
            log.warning("%s: NATS: %s: %s", name, type(exc).__name__, exc or "(no detail)")

    async def disconnected_cb() -> None:
        if not (nc.is_closed or nc.is_draining):  # not our own close()
            log.warning("%s: disconnected from NATS", name)

    async def reconnected_cb() -> None:
        state["errors"] = 0
        log.info("%s: reconnected to NATS", name)

    return {"error_cb": error_cb, "disconnected_cb": disconnected_cb,
            "reconnected_cb": reconnected_cb}


async def connect(settings: NatsSettings | None = None, *, name: str,
                  long_lived: bool = True, reconnect_attempts: int = 60,
                  inbox: str | None = None) -> NATS:
    """Connect to NATS.

    ``inbox``: the prefix of this connection's reply subjects (protocol.inbox_prefix:
    a role's own, which its NATS permissions allow it to hear; default ``_INBOX``).

    ``long_lived``: wait for the server forever (a pod's containers start in any
    order) and reconnect forever. Otherwise raise Unreachable after a few quick
    attempts, then allow ``reconnect_attempts`` reconnections (about one a second).
    """
    settings = settings or NatsSettings.from_env()
    nc = NATS()
    state: dict[str, Any] = {"errors": 0}
    options: dict[str, Any] = {
        "servers": [settings.url],
        "name": name,
        "connect_timeout": 2,
        "reconnect_time_wait": 1 if long_lived else 0.5,
        "max_reconnect_attempts": -1 if long_lived else 2,
        "tls": settings.tls_context(),
        **({"inbox_prefix": inbox} if inbox else {}),
        **_callbacks(name, nc, state, quiet_start=not long_lived),
    }
    try:
        await nc.connect(**options)
    except Exception as exc:  # nats-py raises NoServersError, OSError, TimeoutError...
        cause = state.get("last") or exc
        raise Unreachable(f"cannot reach NATS at {settings.url}: "
                          f"{_describe(cause)}") from None
    state["connected"] = True
    if not long_lived:
        # nats-py uses one limit for the first connection and for reconnections:
        # fail fast at first, be patient once connected.
        nc.options["max_reconnect_attempts"] = reconnect_attempts
    return nc


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (is the pod running, and its NATS port published?)"
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return "no answer (timed out)"
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


async def close(nc: NATS, timeout: float = 5.0) -> None:
    """Flush what is pending and close, without waiting long for a server that is gone."""
    if nc.is_closed:
        return
    with contextlib.suppress(Exception):
        if nc.is_connected:
            await asyncio.wait_for(nc.flush(), timeout)
    with contextlib.suppress(Exception):
        await nc.close()
