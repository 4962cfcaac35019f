"""Issue 14 in a real pod: examples/compile-farm started by `cpb up`, its stock
nats-server running with the mutual-TLS nats.conf cpb mounts, reached through the
pod's published port.

Observed, not assumed: each refused client fails its handshake; each denied
operation reaches nats-py's error_cb as the server's "Permissions Violation";
no `PRIVATE KEY` in `.cpb/`, any log, `cpb kube --cluster` or `cpb plan --json`
output, and none of the project's keys in any image layer (the same searches
find the key folder's keys, so they can fail); a world-readable key stops `cpb
submit`; after `cpb pki rotate`, the next `cpb up` re-creates the pod and the
old client certificate is refused.

Images are searched a little differently: Debian's own libgnutls (in every
image, apt needs it) carries its self-test keys as PEM blocks, and libcrypto,
gpgv and apt's package descriptions the words "PRIVATE KEY". So every file of
every layer is searched for each of the project's keys (a line of its PEM body,
and the start of its base64 form, as a Secret would hold it), and every file
but an ELF binary for any PEM private-key block at all.
Slow: the first build of the example's images takes minutes.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import io
import json
import os
import re
import shutil
import ssl
import stat
import subprocess
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nats
import pytest

from cpb.security.pki import SUBMITTER_ROLE, Pki, default_folder, worker_role
from helpers import copy_compile_farm, cpb_ok, podman, remove_project_images, run_cpb

pytestmark = [pytest.mark.integration, pytest.mark.slow]
NEEDLE = b"PRIVATE KEY"
PEM_KEY = re.compile(rb"-----BEGIN [A-Z ]*PRIVATE KEY-----\r?\n[A-Za-z0-9+/=\r\n]{40,}")


@dataclass
class Farm:
    root: Path
    project: str
    port: int
    pki: Pki

    @property
    def pod(self) -> str:
        return f"{self.project}-farm"

    @property
    def url(self) -> str:
        return f"tls://127.0.0.1:{self.port}"


@pytest.fixture(scope="module")
def farm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Farm]:
    root, project, port = copy_compile_farm(tmp_path_factory.mktemp("tlsfarm"), "t-tls")
    (root / "work").mkdir()
    (root / "true.yaml").write_text("kind: gcc\ntasks:\n" + "  - {argv: ['true']}\n" * 4)
    try:
        cpb_ok(root, "up", "farm")
        yield Farm(root, project, port, Pki(default_folder(root)))
    finally:
        run_cpb(root, "down", "farm", "--volumes")
        remove_project_images(project)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def context(ca: Path, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca))
    if cert and key:
        ctx.load_cert_chain(str(cert), str(key))
    return ctx


async def try_connect(url: str, tls: ssl.SSLContext | None) -> str:
    try:
        nc = await nats.connect(url, tls=tls, connect_timeout=3, allow_reconnect=False,
                                max_reconnect_attempts=0)
    except Exception as exc:
        return f"refused: {type(exc).__name__}: {exc}"
    await nc.close()
    return "connected"


async def denials(url: str, tls: ssl.SSLContext, actions: list[Any]) -> list[str]:
    """Each action on one connection; the permission violations the server reported."""
    seen: list[str] = []

    async def error_cb(exc: Exception) -> None:
        seen.append(str(exc).lower())

    nc = await nats.connect(url, tls=tls, error_cb=error_cb, allow_reconnect=False)
    try:
        for action in actions:
            # a denied request is never answered
            with contextlib.suppress(TimeoutError, asyncio.TimeoutError,
                                     nats.errors.TimeoutError, nats.errors.NoRespondersError):
                await asyncio.wait_for(action(nc), 1.5)
            await nc.flush()
            await asyncio.sleep(0.3)
    finally:
        await nc.close()
    return seen


def violated(seen: list[str], kind: str, subject: str) -> bool:
    return any("permissions violation" in s and kind in s and subject.lower() in s
               for s in seen)


def test_the_pod_serves_jobs_over_mutual_tls(farm: Farm) -> None:
    proc = cpb_ok(farm.root, "submit", "farm", str(farm.root / "true.yaml"), "--json")
    assert json.loads(proc.stdout)["state"] == "succeeded"
    # the manifest gives the runtime a tls:// URL and its own files, never a key
    manifest = cpb_ok(farm.root, "kube", "farm").stdout
    assert '"tls://nats:4222"' in manifest and NEEDLE.decode() not in manifest


def test_the_pod_refuses_clients_without_a_good_certificate(farm: Farm,
                                                            tmp_path: Path) -> None:
    good = farm.pki.files(SUBMITTER_ROLE)
    other = Pki(tmp_path / "other-ca")
    other.ensure([SUBMITTER_ROLE])
    stranger = other.files(SUBMITTER_ROLE)
    ca_key, ca_cert = farm.pki.ca()
    now = dt.datetime.now(dt.timezone.utc)
    expired = Pki(tmp_path / "expired")
    expired.folder.mkdir(mode=0o700)
    # this project's CA and the submitter's name, but it ran out yesterday
    ex = expired.issue(SUBMITTER_ROLE, ca_key, ca_cert, now, days=1,
                       not_before=now - dt.timedelta(days=2))

    async def attempts() -> list[str]:
        return [await try_connect(farm.url, context(good.ca, good.cert, good.key)),  # control
                await try_connect(farm.url.replace("tls://", "nats://"), None),  # plain TCP
                await try_connect(farm.url, context(good.ca)),                 # no certificate
                await try_connect(farm.url, context(good.ca, stranger.cert, stranger.key)),
                await try_connect(farm.url, context(good.ca, ex.cert, ex.key))]

    outcomes = run(attempts())
    assert outcomes[0] == "connected", outcomes[0]
    for what, outcome in zip(("plain TCP", "no certificate", "another CA", "expired"),
                             outcomes[1:], strict=True):
        assert outcome.startswith("refused"), f"{what}: {outcome}"
    log = logs(f"{farm.pod}-nats")
    assert "tls" in log.lower() or "certificate" in log.lower(), log[-2000:]


def test_roles_are_denied_what_is_not_theirs_in_the_pod(farm: Farm) -> None:
    gcc = farm.pki.files(worker_role("gcc"))
    submitter = farm.pki.files(SUBMITTER_ROLE)
    worker_actions = [
        lambda nc: nc.request("cp.v1.md.submit", b"{}", timeout=1),  # publish a job
        lambda nc: nc.request("$JS.API.CONSUMER.MSG.NEXT.CP_TASKS.tasks-clang",
                              b'{"batch":1}', timeout=1),  # read another kind's tasks
        lambda nc: nc.subscribe(">"),
        lambda nc: nc.subscribe("_INBOX.>"),  # everyone's replies
    ]
    submitter_actions = [
        lambda nc: nc.request("$JS.API.CONSUMER.MSG.NEXT.CP_TASKS.tasks-gcc",
                              b'{"batch":1}', timeout=1),  # take a task
        lambda nc: nc.publish("cp.v1.result.gcc.forged", b"{}"),
    ]
    seen_worker = run(denials(farm.url, context(gcc.ca, gcc.cert, gcc.key), worker_actions))
    seen_submitter = run(denials(farm.url, context(submitter.ca, submitter.cert,
                                                   submitter.key), submitter_actions))
    assert violated(seen_worker, "publish", "cp.v1.md.submit"), seen_worker
    assert violated(seen_worker, "publish", "$js.api.consumer.msg.next.cp_tasks.tasks-clang"), \
        seen_worker
    assert violated(seen_worker, "subscription", '">"'), seen_worker
    assert violated(seen_worker, "subscription", '"_inbox.>"'), seen_worker
    assert violated(seen_submitter, "publish",
                    "$js.api.consumer.msg.next.cp_tasks.tasks-gcc"), seen_submitter
    assert violated(seen_submitter, "publish", "cp.v1.result.gcc.forged"), seen_submitter


def logs(container: str) -> str:
    """A container's log, both streams (nats-server writes to stderr)."""
    proc = subprocess.run(["podman", "logs", container], capture_output=True, text=True,
                          check=True)
    return proc.stdout + proc.stderr


def test_each_container_reads_only_its_own_files(farm: Farm) -> None:
    nats_uid = podman("exec", f"{farm.pod}-nats", "id", "-u").strip()
    assert nats_uid == "1000"
    # uid 1000 may enter its folder, not list it; root in the container shows what is there
    ls = ["ls", "/etc/computepods/tls"]
    denied = subprocess.run(["podman", "exec", f"{farm.pod}-nats", *ls],
                            capture_output=True, text=True)
    assert denied.returncode != 0 and "Permission denied" in denied.stderr
    listing = podman("exec", "--user", "0", f"{farm.pod}-nats", *ls).split()
    assert sorted(listing) == ["ca.crt", "nats.conf", "tls.crt", "tls.key"]
    key = podman("exec", f"{farm.pod}-nats", "head", "-c", "27", "/etc/computepods/tls/tls.key")
    assert key == "-----BEGIN PRIVATE KEY-----"  # its own key: uid 1000 reads it
    listing = podman("exec", "--user", "0", f"{farm.pod}-gcc-1", *ls).split()
    assert sorted(listing) == ["ca.crt", "tls.crt", "tls.key"]
    cert = podman("exec", f"{farm.pod}-gcc-1", "cat", "/etc/computepods/tls/tls.crt")
    assert cert.encode() == farm.pki.files(worker_role("gcc")).cert.read_bytes()
    # read-only: a compromised container cannot replace its files
    proc = subprocess.run(["podman", "exec", f"{farm.pod}-gcc-1", "touch",
                           "/etc/computepods/tls/x"], capture_output=True, text=True)
    assert proc.returncode != 0 and "Read-only" in proc.stderr, proc.stderr
    # on the host: 0400, owned by the uid the container runs as (1000 for nats)
    copy = farm.pki.folder / "pods" / farm.pod / "nats" / "tls.key"
    info = copy.stat()
    assert (stat.S_IMODE(info.st_mode), info.st_uid) == (0o400, 1000)


def key_needles(pki: Pki) -> list[bytes]:
    """Each key of the key folder as it could land anywhere: a line of its PEM body,
    and the start of the whole file in base64 (a Secret's `data`)."""
    needles = []
    for key in sorted(pki.folder.glob("*.key")):
        pem = key.read_bytes()
        needles += [pem.splitlines()[1], base64.b64encode(pem)[:64]]
    return needles


def _found(data: bytes, needles: list[bytes]) -> bool:
    return any(n in data for n in needles) or (
        not data.startswith(b"\x7fELF") and PEM_KEY.search(data) is not None)


def _layer_hits(archive: Path, needles: list[bytes]) -> list[str]:
    """Files in a tar file (`podman save`'s archive) and in every tar inside it (its
    layers) holding one of the project's keys, or (but ELF binaries) any PEM
    private key."""
    hits = []
    with tarfile.open(archive) as outer:
        for member in outer:
            if not member.isfile():
                continue
            data = outer.extractfile(member).read()  # type: ignore[union-attr]
            if not tarfile.is_tarfile(io.BytesIO(data)):
                if _found(data, needles):
                    hits.append(member.name)
                continue
            with tarfile.open(fileobj=io.BytesIO(data)) as inner:
                for item in inner:
                    if item.isfile() and _found(inner.extractfile(item).read(),  # type: ignore[union-attr]
                                                needles):
                        hits.append(f"{member.name}:{item.name}")
    return hits


def _tree_hits(folder: Path, needles: list[bytes]) -> list[str]:
    """Files under `folder` holding `PRIVATE KEY` or a key of the project; a tar file
    (a root file system cpb made for an image) is searched like an image layer."""
    hits = []
    for path in folder.rglob("*"):
        if not path.is_file() or path.is_symlink():
            continue
        if tarfile.is_tarfile(path):
            hits += _layer_hits(path, needles)
        elif NEEDLE in path.read_bytes() or any(n in path.read_bytes() for n in needles):
            hits.append(str(path))
    return hits


def test_no_private_key_in_images_state_logs_or_output(farm: Farm, tmp_path: Path) -> None:
    # the searches can fail: they find the keys where they are
    needles = key_needles(farm.pki)
    assert _tree_hits(farm.pki.folder, needles)
    assert len(needles) >= 10 and all(_found(k.read_bytes(), needles)
                                      for k in farm.pki.folder.glob("*.key"))
    images = [n for n in podman("images", "--format", "{{.Repository}}:{{.Tag}}").split()
              if n.startswith(f"localhost/{farm.project}/")]
    assert {n.split("/")[2].split(":")[0] for n in images} >= {"base", "nats", "majordomo",
                                                                 "worker-gcc"}, images
    for image in images:
        archive = tmp_path / "image.tar"
        podman("save", "-o", str(archive), image)
        assert archive.stat().st_size > 1000
        assert _layer_hits(archive, needles) == [], image
        archive.unlink()
    # the key folder is not under .cpb/; all of .cpb/ (logs, records, manifests) is searched
    state = farm.root / ".cpb"
    assert farm.pki.folder not in state.parents and (state / "logs").is_dir()
    assert _tree_hits(state, needles) == []
    for container in podman("ps", "-a", "--format", "{{.Names}}",
                            "--filter", f"pod={farm.pod}").split():
        assert NEEDLE.decode() not in logs(container), container
    cluster = cpb_ok(farm.root, "kube", "farm", "--cluster")
    assert NEEDLE.decode() not in cluster.stdout + cluster.stderr
    assert "kind: Secret" not in cluster.stdout and '"farm-nats-tls"' in cluster.stdout
    plan = run_cpb(farm.root, "plan", "--json", "--all")
    assert plan.returncode == 0 and plan.stdout, plan.stderr
    assert NEEDLE.decode() not in plan.stdout + plan.stderr


def test_a_world_readable_key_is_refused(farm: Farm) -> None:
    key = farm.pki.files(SUBMITTER_ROLE).key
    os.chmod(key, 0o644)
    try:
        proc = run_cpb(farm.root, "submit", "farm", str(farm.root / "true.yaml"))
    finally:
        os.chmod(key, 0o600)
    assert proc.returncode == 3, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        f"cpb: error: {key}: private key is mode 0644, readable by others; it may have "
        "leaked: run `cpb pki rotate` to make new keys")
    assert "Traceback" not in proc.stderr


def test_rotation_re_creates_the_pod_and_refuses_the_old_certificate(
        farm: Farm, tmp_path: Path) -> None:
    old = tmp_path / "old"
    old.mkdir()
    for name in ("ca.crt", "submitter.crt", "submitter.key"):
        shutil.copy2(farm.pki.folder / name, old / name)
    pod_id = podman("pod", "inspect", farm.pod, "--format", "{{.Id}}").strip()
    cpb_ok(farm.root, "pki", "rotate")
    planned = json.loads(cpb_ok(farm.root, "plan", "--json").stdout)
    reasons = [r for task in planned["tasks"] if task["task"] == "pod:farm"
               for r in task["reasons"]]
    assert "certificates renewed" in reasons, planned
    cpb_ok(farm.root, "up", "farm")
    assert podman("pod", "inspect", farm.pod, "--format", "{{.Id}}").strip() != pod_id
    new = farm.pki.files(SUBMITTER_ROLE)

    async def attempts() -> tuple[str, str]:
        return (await try_connect(farm.url, context(new.ca, old / "submitter.crt",
                                                    old / "submitter.key")),
                await try_connect(farm.url, context(old / "ca.crt", new.cert, new.key)))

    old_client, old_ca = run(attempts())
    assert old_client.startswith("refused"), old_client
    assert old_ca.startswith("refused"), old_ca  # the old CA does not vouch for the new server
    proc = cpb_ok(farm.root, "submit", "farm", str(farm.root / "true.yaml"), "--json")
    assert json.loads(proc.stdout)["state"] == "succeeded"
