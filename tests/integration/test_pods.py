"""Pods under the real `podman kube play` (issue: pods).

These tests use a podman storage of their own (CONTAINERS_STORAGE_CONF, a
folder under the session's tmp): their pods, volumes and images can neither
collide with nor be slowed down by anyone else's.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from cpb.cli import main
from helpers import podman

pytestmark = pytest.mark.integration
NATS_SERVER = Path("/usr/sbin/nats-server")


@pytest.fixture(scope="session")
def private_storage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("podman-storage")
    conf = root / "storage.conf"
    conf.write_text(f'[storage]\ndriver = "overlay"\ngraphroot = "{root}/graph"\n'
                    f'runroot = "{root}/run"\n')
    yield conf
    env = {**os.environ, "CONTAINERS_STORAGE_CONF": str(conf)}
    for args in (["pod", "rm", "--all", "--force", "--time", "0"],
                 ["rm", "--all", "--force", "--time", "0"], ["volume", "prune", "--force"],
                 ["rmi", "--all", "--force"]):
        subprocess.run(["podman", *args], env=env, capture_output=True, check=False)
    subprocess.run(["umount", "-R", str(root / "graph" / "overlay")], capture_output=True,
                   check=False)
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(autouse=True)
def own_storage(private_storage: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONTAINERS_STORAGE_CONF", str(private_storage))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cli(root: Path, *argv: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["-f", str(root / "cpb.yaml"), *argv])
    out, err = capsys.readouterr()
    return code, out, err


def fetch(url: str, timeout: float = 30) -> str:
    """GET url, retrying while the pod starts; the last error if it never answers."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=3) as response:  # noqa: S310 (loopback)
                return str(response.read().decode())
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


def pod_state(name: str) -> tuple[list[str], dict[str, str]]:
    """(pod names like `name`, {container name: id}) in podman right now."""
    pods = [p["Name"] for p in json.loads(podman("pod", "ps", "--format", "json") or "[]")
            if p["Name"] == name]
    found = podman("ps", "--all", "--format", "json", "--filter", f"pod={name}") if pods else ""
    containers = {c["Names"][0]: c["Id"] for c in json.loads(found or "[]")
                  if not c.get("IsInfra")}
    return pods, containers


def pod_id(name: str) -> str:
    return podman("pod", "inspect", "--format", "{{.Id}}", name).strip()


def leftovers(name: str, old_id: str) -> list[str]:
    """Anything of pod `name` (id `old_id`) podman still has, infra container included."""
    pods = [p for p in json.loads(podman("pod", "ps", "--format", "json") or "[]")
            if p["Name"] == name or p["Id"] == old_id]
    containers = [c for c in json.loads(podman("ps", "--all", "--format", "json") or "[]")
                  if c.get("Pod") == old_id or any(name in n for n in c["Names"])]
    return [p["Name"] for p in pods] + [c["Names"][0] for c in containers]


# -- a pod of busybox containers: localhost, a published port, shared volumes -----

WEB_SPEC = """
project: "@PROJECT@"
images:
  base:
    rootfs: {tar: busybox.tar}
  web:
    from: base
    ports: [8080]
    cmd: [/bin/busybox, httpd, -f, -p, "8080", -h, /shared]
  tool:
    from: base
    env: {FLAVOUR: plain}
pods:
  demo:
    stop_timeout: 1
    labels: {purpose: test}
    containers:
      - image: web
        volumes: [{volume: shared, mount: /shared}]
      - image: tool
        args:
          - /bin/sh
          - -c
          - >-
            echo "from tool ($FLAVOUR)" > /shared/tool.txt;
            while true;
            do /bin/busybox wget -q -O /shared/via-localhost.txt http://localhost:8080/tool.txt;
            /bin/busybox wget -q -O /shared/via-name.txt http://web:8080/tool.txt;
            cp /shared/via-localhost.txt /out/copied.txt;
            sleep 1; done
        volumes:
          - {volume: shared, mount: /shared}
          - {host: out, mount: /out}
    ports: ["127.0.0.1:@PORT@:8080"]
"""


def test_pod_up_reaches_localhost_port_and_volumes_then_down(
        make_project, project_name: str, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    root: Path = make_project(WEB_SPEC.replace("@PORT@", str(port)))
    pod_name = f"{project_name}-demo"

    code, out, err = cli(root, "plan", "pod:demo", capsys=capsys)
    assert code == 0 and f"pod:demo\n    - pod {pod_name} is not running\n" in out

    code, out, err = cli(root, "up", "demo", capsys=capsys)
    assert code == 0, out + err
    assert f"pod demo: running as {pod_name}" in out
    base = f"http://127.0.0.1:{port}"
    # the tool container wrote into the shared volume, the web container serves it,
    # and the tool fetched it back from the web container over localhost and by name
    assert fetch(f"{base}/tool.txt") == "from tool (plain)\n"
    assert fetch(f"{base}/via-localhost.txt") == "from tool (plain)\n"
    assert fetch(f"{base}/via-name.txt") == "from tool (plain)\n"
    copied = root / "out" / "copied.txt"  # the host folder volume
    deadline = time.monotonic() + 20
    while not copied.exists() and time.monotonic() < deadline:
        time.sleep(0.3)
    assert copied.read_text() == "from tool (plain)\n"

    # the manifest podman played is the one `cpb kube` prints, and it is a valid Pod
    played = (root / ".cpb/pods/demo.yaml").read_text()
    code, out, _ = cli(root, "kube", "demo", capsys=capsys)
    assert out == played and yaml.safe_load(played)["kind"] == "Pod"

    code, out, _ = cli(root, "status", capsys=capsys)
    assert code == 0
    assert out.startswith(f"demo: {pod_name} Running, up to date\n")
    assert " web " in out and " tool " in out and out.count("running") == 2
    code, out, _ = cli(root, "status", "--json", capsys=capsys)
    status = json.loads(out)["pods"][0]
    tags = {c["name"]: c["image"] for c in status["containers"]}
    assert set(tags) == {"web", "tool"}
    for container in status["containers"]:
        assert container["state"] == "running"
        assert container["image"].endswith(f":cpb-{container['digest'][:12]}")

    # unchanged spec: the running pod is left alone
    _, before = pod_state(pod_name)
    assert len(before) == 2
    code, out, err = cli(root, "up", "demo", capsys=capsys)
    assert code == 0, out + err
    assert "pod:demo" not in out  # doit had nothing to run for it
    assert pod_state(pod_name)[1] == before

    # a changed image re-creates the pod; `cpb plan` says why first
    spec = root / "cpb.yaml"
    spec.write_text(spec.read_text().replace("FLAVOUR: plain", "FLAVOUR: spicy"))
    code, out, _ = cli(root, "plan", capsys=capsys)
    assert "pod:demo\n    - image tool will be rebuilt\n" in out
    code, out, err = cli(root, "up", "demo", capsys=capsys)
    assert code == 0, out + err
    after = pod_state(pod_name)[1]
    assert set(after) == set(before) and not set(after.values()) & set(before.values())
    assert fetch(f"{base}/tool.txt") == "from tool (spicy)\n"

    # a changed pod spec alone re-creates it too, with the reason
    spec.write_text(spec.read_text().replace("purpose: test", "purpose: retest"))
    code, out, _ = cli(root, "plan", capsys=capsys)
    assert "pod:demo\n    - pod spec changed\n" in out and "build:" not in out
    assert cli(root, "up", capsys=capsys)[0] == 0
    assert fetch(f"{base}/tool.txt") == "from tool (spicy)\n"

    old_id = pod_id(pod_name)
    code, out, _ = cli(root, "down", "demo", "--volumes", capsys=capsys)
    assert code == 0 and out == f"pod demo: removed {pod_name}\n"
    assert leftovers(pod_name, old_id) == []
    assert f"{project_name}-shared" not in podman("volume", "ls", "--format", "{{.Name}}")
    code, out, _ = cli(root, "down", "demo", capsys=capsys)
    assert code == 0 and out == f"pod demo: {pod_name} was not running\n"
    code, out, _ = cli(root, "status", capsys=capsys)
    assert out == f"demo: {pod_name} not running\n"


# -- a real nats-server ---------------------------------------------------------------

NATS_SPEC = """
project: "@PROJECT@"
images:
  base:
    rootfs: {tar: busybox.tar}
  nats:
    from: base
    version: "2.9"
    # the Debian package's binary and the two files it loads at run time
    artifacts:
      - {path: files/nats-server, dest: /usr/local/bin/}
      - {path: files/libc.so.6, dest: /lib/x86_64-linux-gnu/}
      - {path: files/ld-linux-x86-64.so.2, dest: /lib64/}
    ports: [4222]
    cmd: [/usr/local/bin/nats-server, -p, "4222"]
pods:
  queue:
    stop_timeout: 2
    containers:
      - {image: nats}
    ports: ["127.0.0.1:@PORT@:4222"]
"""


def nats_files(root: Path) -> None:
    files = root / "files"
    files.mkdir(exist_ok=True)
    for source in (NATS_SERVER, Path("/lib/x86_64-linux-gnu/libc.so.6"),
                   Path("/lib64/ld-linux-x86-64.so.2")):
        shutil.copy(source.resolve(), files / source.name)
        (files / source.name).chmod(0o755)


def nats_ping(port: int, timeout: float = 30) -> str:
    """Speak NATS' text protocol: read INFO, send CONNECT and PING, return the answer."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=3) as sock:
                stream = sock.makefile("rwb")
                info = stream.readline()
                if not info.startswith(b"INFO "):
                    raise OSError(f"no INFO from the server: {info!r}")
                assert json.loads(info[5:])["port"] == 4222
                stream.write(b'CONNECT {"verbose":false,"pedantic":false}\r\nPING\r\n')
                stream.flush()
                return stream.readline().decode().strip()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


def test_nats_pod_serves_a_client_on_the_host(
        make_project, project_name: str, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    root: Path = make_project(NATS_SPEC.replace("@PORT@", str(port)))
    nats_files(root)
    code, out, err = cli(root, "up", "queue", capsys=capsys)
    assert code == 0, out + err
    assert nats_ping(port) == "PONG"
    pod_name = f"{project_name}-queue"
    old_id = pod_id(pod_name)
    code, out, _ = cli(root, "down", capsys=capsys)
    assert code == 0 and out == f"pod queue: removed {pod_name}\n"
    assert leftovers(pod_name, old_id) == []
    with pytest.raises(OSError):
        nats_ping(port, timeout=0)
