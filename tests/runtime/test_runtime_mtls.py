"""Issue 14 against a real nats-server: mutual TLS and per-role permissions,
with the real MajorDomo and worker as subprocesses and cpb's own CA and
rendered nats.conf. Every refusal and denial is observed: a refused client
fails to connect, a denied operation reaches nats-py's error_cb as the
server's "Permissions Violation" (and a denied request times out)."""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats
import pytest
from runtime_pod import Pod, run
from tls_pod import TlsNatsServer, role_env, role_settings, tls_server

from cpb.security.pki import MAJORDOMO_ROLE, SUBMITTER_ROLE, Pki, worker_role
from cpb_runtime import Client, NatsSettings

KINDS = ("gcc", "clang")


def _server(tmp_path: Path, pki: Pki) -> TlsNatsServer:
    return tls_server(tmp_path, pki, KINDS)


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki(tmp_path / "pki")


@pytest.fixture
def tls_pod(tmp_path: Path, pki: Pki) -> Iterator[Pod]:
    server = _server(tmp_path, pki)
    work = tmp_path / "pod"
    work.mkdir()
    the_pod = Pod(server, work)
    yield the_pod
    the_pod.stop_all()
    server.stop()
    print(the_pod.logs(), server.log.read_text()[-3000:])


def settings(pod: Pod, pki: Pki, role: str) -> NatsSettings:
    return role_settings(pod.nats.url, pki, role)


def start(pod: Pod, pki: Pki) -> None:
    if pod.nats.proc is None:
        pod.nats.start()
    pod.start_majordomo(**role_env(pki, MAJORDOMO_ROLE))
    pod.start_worker("gcc-1", kind="gcc", **role_env(pki, worker_role("gcc")))


async def submitter(pod: Pod, pki: Pki) -> Client:
    client = await Client.connect(settings(pod, pki, SUBMITTER_ROLE), poll_s=0.5,
                                  patience_s=30.0)
    await pod.wait_ready(client, "gcc-1")
    return client


def test_the_runtime_runs_a_job_over_mutual_tls(tls_pod: Pod, pki: Pki) -> None:
    start(tls_pod, pki)

    async def scenario() -> Any:
        async with await submitter(tls_pod, pki) as client:
            return await client.run({"kind": "gcc", "tasks": [
                *[["echo", str(i)] for i in range(5)], ["env"]]})

    outcome = run(scenario())
    assert outcome.state == "succeeded" and outcome.counts.succeeded == 6
    assert [r.stdout_tail for r in outcome.results[:5]] == [f"{i}\n" for i in range(5)]
    # a task never learns where its worker's key is
    assert "PYTHONPATH" in outcome.results[5].stdout_tail
    assert "CP_NATS" not in outcome.results[5].stdout_tail


async def _try_connect(url: str, tls: ssl.SSLContext | None) -> str:
    errors: list[str] = []

    async def error_cb(exc: Exception) -> None:
        errors.append(f"{type(exc).__name__}: {exc}")

    try:
        nc = await nats.connect(url, tls=tls, connect_timeout=2, allow_reconnect=False,
                                max_reconnect_attempts=0, error_cb=error_cb)
    except Exception as exc:
        return f"refused: {type(exc).__name__}: {exc} {errors}"
    await nc.close()
    return "connected"


def _context(ca: Path, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca))
    if cert and key:
        context.load_cert_chain(str(cert), str(key))
    return context


def test_clients_without_a_good_certificate_are_refused(tls_pod: Pod, pki: Pki,
                                                        tmp_path: Path) -> None:
    tls_pod.nats.start()
    url, plain = tls_pod.nats.url, tls_pod.nats.url.replace("tls://", "nats://")
    good = pki.files(SUBMITTER_ROLE)
    other = Pki(tmp_path / "other-ca")
    other.ensure([SUBMITTER_ROLE])
    stranger = other.files(SUBMITTER_ROLE)
    ca_key, ca_cert = pki.ca()
    now = dt.datetime.now(dt.timezone.utc)
    expired = Pki(tmp_path / "expired")
    expired.folder.mkdir(mode=0o700)
    # this project's CA, the submitter's name, but it ran out yesterday
    ex = expired.issue(SUBMITTER_ROLE, ca_key, ca_cert, now, days=1,
                       not_before=now - dt.timedelta(days=2))

    async def attempts() -> list[str]:
        return [await _try_connect(url, _context(good.ca, good.cert, good.key)),  # control
                await _try_connect(plain, None),                                # plain TCP
                await _try_connect(url, _context(good.ca)),                     # no certificate
                await _try_connect(url, _context(good.ca, stranger.cert, stranger.key)),
                await _try_connect(url, _context(good.ca, ex.cert, ex.key))]   # expired

    outcomes = run(attempts())
    assert outcomes[0] == "connected"
    for what, outcome in zip(("plain TCP", "no certificate", "another CA", "expired"),
                             outcomes[1:], strict=True):
        assert outcome.startswith("refused"), f"{what}: {outcome}"
    log = tls_pod.nats.log.read_text()
    assert "certificate" in log.lower() or "tls" in log.lower()


async def _denials(url: str, tls: ssl.SSLContext, actions: list[tuple[str, Any]]) -> list[str]:
    """Run each action on one connection; return the permission violations observed."""
    seen: list[str] = []

    async def error_cb(exc: Exception) -> None:
        seen.append(str(exc))

    nc = await nats.connect(url, tls=tls, error_cb=error_cb, allow_reconnect=False)
    try:
        for _, action in actions:
            try:
                await asyncio.wait_for(action(nc), 1.5)
            except (TimeoutError, asyncio.TimeoutError, nats.errors.TimeoutError):
                pass  # a denied request is never answered
            except nats.errors.NoRespondersError:
                pass
            await nc.flush()
            await asyncio.sleep(0.2)
    finally:
        await nc.close()
    return seen


def _violations(seen: list[str], kind: str, subject: str) -> bool:
    return any("permissions violation" in s.lower() and kind.lower() in s.lower()
               and subject.lower() in s.lower() for s in seen)  # nats-py lowercases it


def test_a_workers_certificate_is_limited_to_its_kind(tls_pod: Pod, pki: Pki) -> None:
    start(tls_pod, pki)  # MajorDomo creates the consumers the worker may bind to

    async def scenario() -> list[str]:
        async with await submitter(tls_pod, pki) as client:
            await client.workers()
        f = pki.files(worker_role("gcc"))
        actions: list[tuple[str, Any]] = [
            ("submit a job", lambda nc: nc.request("cp.v1.md.submit", b"{}", timeout=1)),
            ("publish a task", lambda nc: nc.publish("cp.v1.task.gcc.forged", b"{}")),
            ("read clang's tasks", lambda nc: nc.request(
                "$JS.API.CONSUMER.MSG.NEXT.CP_TASKS.tasks-clang", b'{"batch":1}', timeout=1)),
            ("subscribe to >", lambda nc: nc.subscribe(">")),
            ("hear everyone's replies", lambda nc: nc.subscribe("_INBOX.>")),
            ("hear MajorDomo's replies", lambda nc: nc.subscribe("_INBOX.majordomo.>")),
            ("hear clang's cancel notices", lambda nc: nc.subscribe("cp.v1.cancel.clang")),
            ("create a consumer", lambda nc: nc.request(
                "$JS.API.CONSUMER.DURABLE.CREATE.CP_TASKS.mine", b"{}", timeout=1)),
        ]
        return await _denials(tls_pod.nats.url, _context(f.ca, f.cert, f.key), actions)

    seen = run(scenario())
    assert _violations(seen, "publish", "cp.v1.md.submit"), seen
    assert _violations(seen, "publish", "cp.v1.task.gcc.forged"), seen
    assert _violations(seen, "publish", "$JS.API.CONSUMER.MSG.NEXT.CP_TASKS.tasks-clang"), seen
    assert _violations(seen, "subscription", ">"), seen
    assert _violations(seen, "subscription", '"_inbox.>"'), seen
    assert _violations(seen, "subscription", "_inbox.majordomo.>"), seen
    assert _violations(seen, "subscription", "cp.v1.cancel.clang"), seen
    assert _violations(seen, "publish", "$JS.API.CONSUMER.DURABLE.CREATE"), seen


def test_the_submitters_certificate_cannot_take_tasks_or_publish_results(
        tls_pod: Pod, pki: Pki) -> None:
    start(tls_pod, pki)

    async def scenario() -> list[str]:
        async with await submitter(tls_pod, pki) as client:
            await client.workers()
        f = pki.files(SUBMITTER_ROLE)
        actions: list[tuple[str, Any]] = [
            ("take a task", lambda nc: nc.request(
                "$JS.API.CONSUMER.MSG.NEXT.CP_TASKS.tasks-gcc", b'{"batch":1}', timeout=1)),
            ("publish a result", lambda nc: nc.publish("cp.v1.result.gcc.forged", b"{}")),
            ("send a heartbeat", lambda nc: nc.publish("cp.v1.hb.gcc.fake", b"{}")),
            ("listen to the workers", lambda nc: nc.subscribe("cp.v1.hb.>")),
        ]
        return await _denials(tls_pod.nats.url, _context(f.ca, f.cert, f.key), actions)

    seen = run(scenario())
    assert _violations(seen, "publish", "$JS.API.CONSUMER.MSG.NEXT.CP_TASKS.tasks-gcc"), seen
    assert _violations(seen, "publish", "cp.v1.result.gcc.forged"), seen
    assert _violations(seen, "publish", "cp.v1.hb.gcc.fake"), seen
    assert _violations(seen, "subscription", "cp.v1.hb.>"), seen


def test_after_rotation_old_certificates_are_refused_and_new_ones_work(
        tls_pod: Pod, pki: Pki, tmp_path: Path) -> None:
    old = tmp_path / "old"
    old.mkdir()
    for name in ("ca.crt", "submitter.crt", "submitter.key"):
        (old / name).write_bytes((pki.folder / name).read_bytes())
    pki.rotate()
    pki.ensure([MAJORDOMO_ROLE, SUBMITTER_ROLE, *map(worker_role, KINDS)])
    tls_pod.nats.start()  # with the new server certificate and CA
    start(tls_pod, pki)
    new = pki.files(SUBMITTER_ROLE)

    async def scenario() -> tuple[str, str, Any]:
        before = await _try_connect(tls_pod.nats.url, _context(
            new.ca, old / "submitter.crt", old / "submitter.key"))
        trusting_old = await _try_connect(tls_pod.nats.url, _context(
            old / "ca.crt", new.cert, new.key))
        async with await submitter(tls_pod, pki) as client:
            outcome = await client.run({"kind": "gcc", "tasks": [["true"]]})
        return before, trusting_old, outcome

    old_client, old_ca, outcome = run(scenario())
    assert old_client.startswith("refused"), old_client
    assert old_ca.startswith("refused"), old_ca  # the old CA does not vouch for the server
    assert outcome.state == "succeeded"
