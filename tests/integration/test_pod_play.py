"""Pods under the real `podman kube play` (issue: pods).

These tests use a podman storage of their own (CONTAINERS_STORAGE_CONF, a
folder under the session's tmp): their pods, volumes and images can neither
collide with nor be slowed down by anyone else's.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import tomllib
import yaml

from cpb.adapters.runner import ProcessRunner
from cpb.cli.app import main
from cpb.project import open_project
from cpb.tasks.doitapp import run_doit
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
pod_defaults:
  resources: {cpu: "100m", memory: 32Mi}
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

    # `cpb build` builds the images, and starts no pod
    code, out, err = cli(root, "build", capsys=capsys)
    assert code == 0 and "ok  tag:tool" in out and "pod:" not in out, out + err
    assert pod_state(pod_name) == ([], {})

    code, out, err = cli(root, "up", "demo", capsys=capsys)
    assert code == 0, out + err
    assert f"pod demo: running as {pod_name}" in out
    assert "ok  pod:demo" in out and "build:" not in out  # the images were there
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
    runner = ProcessRunner()  # a no-op `up` asks twice: the image listing and `pod ps`
    assert run_doit(open_project(root / "cpb.yaml", runner=runner), ["pod:demo"]) == 0
    assert dict(runner.started) == {"buildah": 1, "podman": 1}

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


def test_a_pod_that_cannot_start_fails_with_its_log(
        make_project, project_name: str, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    root: Path = make_project("""
        project: "@PROJECT@"
        images:
          base:
            rootfs: {tar: busybox.tar}
        pods:
          broken:
            stop_timeout: 0
            containers:
              - {image: base, command: [/no/such/program]}
        """)
    code, out, err = cli(root, "up", capsys=capsys)
    assert code == 1
    log = root / ".cpb/logs/pod-broken.log"
    assert f"FAIL pod:broken: podman exited with 125; log: {log}" in out
    assert "/no/such/program" in log.read_text()
    assert "Traceback" not in out + err
    code, out, _ = cli(root, "down", capsys=capsys)
    assert code == 0
    assert pod_state(f"{project_name}-broken") == ([], {})


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


def pods_md_nats_args() -> list[str]:
    """The `args` of the nats container in docs/pods.md's example."""
    text = (Path(__file__).resolve().parents[2] / "docs" / "pods.md").read_text()
    block = text.split("```yaml\n", 1)[1].split("```", 1)[0]
    containers = yaml.safe_load(block)["pods"]["farm"]["containers"]
    args = next(c["args"] for c in containers if c["image"] == "nats")
    assert isinstance(args, list)
    return [str(a) for a in args]


def test_pods_md_args_example_runs_on_an_image_with_only_a_cmd(
        make_project, project_name: str, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    """docs/pods.md's `args:` for the README's nats image (a cmd, no entrypoint)."""
    args = pods_md_nats_args()
    port = free_port()
    spec = NATS_SPEC.replace("@PORT@", str(port)).replace(
        "      - {image: nats}", f"      - {{image: nats, args: {json.dumps(args)}}}")
    root: Path = make_project(spec)
    nats_files(root)
    code, out, err = cli(root, "up", "queue", capsys=capsys)
    assert code == 0, out + err
    assert nats_ping(port) == "PONG"
    pod_name = f"{project_name}-queue"
    _, containers = pod_state(pod_name)
    inspected = json.loads(podman("container", "inspect", *containers.values()))
    assert [[c["Path"], *c["Args"]] for c in inspected] == [args]
    code, out, err = cli(root, "status", "queue", capsys=capsys)
    assert code == 0 and "Running" in out, out + err
    assert cli(root, "down", capsys=capsys)[0] == 0


# -- rootless: the same up/down as an unprivileged user -------------------------------

def _copy_distributions(requirements: list[str], dest: Path) -> None:
    """Copy installed distributions (and what they require) into `dest`, for a
    Python the unprivileged user can run when ours lives where it cannot read."""
    from importlib import metadata

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    seen: set[str] = set()
    todo = list(requirements)
    while todo:
        requirement = Requirement(todo.pop())
        if requirement.marker and not requirement.marker.evaluate({"extra": ""}):
            continue
        key = canonicalize_name(requirement.name)
        if key in seen:
            continue
        seen.add(key)
        dist = metadata.distribution(requirement.name)
        for file in dist.files or []:
            if file.parts[0] == ".." or "__pycache__" in file.parts:
                continue  # scripts outside site-packages; caches
            source = Path(str(dist.locate_file(file)))
            if source.is_file():
                (dest / file).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, dest / file)
        todo.extend(dist.requires or [])


def _as_user(user: str, env: dict[str, str], *args: str, check: bool = True,
             timeout: float = 900) -> subprocess.CompletedProcess[str]:
    env_args = [f"{k}={v}" for k, v in sorted(env.items())]
    return subprocess.run(["runuser", "-u", user, "--", "env", "-i", *env_args, *args],
                          capture_output=True, text=True, check=check, timeout=timeout)


@pytest.fixture
def rootless(busybox_tar: Path) -> Iterator[tuple[str, Path, dict[str, str]]]:
    """(user, world-readable work folder, environment for that user's commands)."""
    user = f"cpbt{uuid.uuid4().hex[:8]}"
    subprocess.run(["useradd", "-m", user], check=True, capture_output=True)
    uid = subprocess.run(["id", "-u", user], check=True, capture_output=True,
                         text=True).stdout.strip()
    # rootless networking (slirp4netns) opens /dev/net/tun (ENVIRONMENT.md)
    Path("/dev/net/tun").chmod(0o666)
    work = Path(tempfile.mkdtemp(prefix="cpb-rootless-", dir="/tmp"))
    work.chmod(0o755)
    try:
        repo = Path(__file__).resolve().parents[2]
        lib, bin_dir = work / "lib", work / "bin"
        shutil.copytree(repo / "src" / "cpb", lib / "cpb",
                        ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copytree(repo / "templates", lib / "cpb" / "templates")
        shutil.copy(repo / ".ci" / "containers.conf", work / "containers.conf")
        python = sys.executable
        env = {"HOME": f"/home/{user}", "USER": user, "LOGNAME": user,
               "PATH": f"{bin_dir}:{Path(python).parent}:/usr/sbin:/usr/bin:/sbin:/bin",
               "PYTHONPATH": str(lib), "CONTAINERS_CONF": str(work / "containers.conf"),
               "LANG": "C.UTF-8"}
        bin_dir.mkdir()
        probe = _as_user(user, env, python, "-c", "import cekit, doit", check=False)
        if probe.returncode != 0:
            # our Python is out of the user's reach (e.g. under /root): use the
            # system's, with copies of cpb's dependencies
            python = "/usr/bin/python3"
            version = subprocess.run([python, "-c", "import sys; print(sys.version_info[:2])"],
                                     capture_output=True, text=True, check=True).stdout
            assert version.strip() == str(sys.version_info[:2]), "no usable Python for the user"
            deps = tomllib.loads((repo / "pyproject.toml").read_text())["project"]["dependencies"]
            _copy_distributions(deps, lib)
            cekit = bin_dir / "cekit"
            cekit.write_text(f"#!{python}\nimport sys\nfrom cekit.cli import cli\n"
                             "sys.exit(cli())\n")
            cekit.chmod(0o755)
            env["PATH"] = f"{bin_dir}:/usr/sbin:/usr/bin:/sbin:/bin"
        env["CPB_PYTHON"] = python
        (work / "busybox.tar").write_bytes(busybox_tar.read_bytes())
        yield user, work, env
    finally:
        for args in (["pod", "rm", "--all", "--force", "--time", "0"],
                     ["rm", "--all", "--force", "--time", "0"], ["rmi", "--all", "--force"]):
            _as_user(user, {k: v for k, v in env.items() if k != "CPB_PYTHON"},
                     "podman", *args, check=False)
        left = subprocess.run(["pgrep", "-u", user], capture_output=True, text=True).stdout
        for pid in left.split():  # podman's pause process and friends, all started here
            subprocess.run(["kill", "-9", pid], capture_output=True, check=False)
        subprocess.run(["userdel", "-r", "-f", user], capture_output=True, check=False)
        shutil.rmtree(work, ignore_errors=True)
        for runtime in (f"/tmp/containers-user-{uid}", f"/tmp/podman-run-{uid}"):
            shutil.rmtree(runtime, ignore_errors=True)  # rootless podman's runtime folders


def test_rootless_up_and_down_use_only_the_users_podman(
        rootless: tuple[str, Path, dict[str, str]], project_name: str) -> None:
    user, work, env = rootless
    python = env.pop("CPB_PYTHON")
    port = free_port()
    root = work / "proj"
    root.mkdir()
    (root / "cpb.yaml").write_text(NATS_SPEC.replace("@PROJECT@", project_name)
                                   .replace("@PORT@", str(port)))
    shutil.copy(work / "busybox.tar", root / "busybox.tar")
    nats_files(root)
    subprocess.run(["chown", "-R", f"{user}:{user}", str(root)], check=True)
    cpb = [python, "-m", "cpb", "-f", str(root / "cpb.yaml")]
    pod_name = f"{project_name}-queue"

    up = _as_user(user, env, *cpb, "up", "queue", check=False)
    assert up.returncode == 0, up.stdout + up.stderr
    assert "ok  build:nats" in up.stdout and "ok  pod:queue" in up.stdout  # built as the user
    assert nats_ping(port) == "PONG"
    users_pods = _as_user(user, env, "podman", "pod", "ps", "--format", "{{.Name}}").stdout
    assert users_pods.split() == [pod_name]
    info = _as_user(user, env, "podman", "info", "--format", "{{.Host.Security.Rootless}}")
    assert info.stdout.strip() == "true"
    # root's podman (both the shared storage and this session's own) never saw it
    assert pod_name not in podman("pod", "ps", "--format", "{{.Name}}")
    shared = {k: v for k, v in os.environ.items() if k != "CONTAINERS_STORAGE_CONF"}
    assert pod_name not in subprocess.run(["podman", "pod", "ps", "--format", "{{.Name}}"],
                                          env=shared, capture_output=True, text=True).stdout
    status = _as_user(user, env, *cpb, "status")
    assert status.stdout.startswith(f"queue: {pod_name} Running, up to date\n")

    down = _as_user(user, env, *cpb, "down", check=False)
    assert down.returncode == 0, down.stdout + down.stderr
    assert down.stdout == f"pod queue: removed {pod_name}\n"
    assert _as_user(user, env, "podman", "pod", "ps", "-q").stdout == ""
    assert _as_user(user, env, "podman", "ps", "--all", "-q").stdout == ""
    with pytest.raises(OSError):
        nats_ping(port, timeout=0)


# -- the truth about a pod (issue 18) -----------------------------------------------

CRASH_SPEC = """
project: "@PROJECT@"
images:
  base:
    rootfs: {tar: busybox.tar}
pods:
  loop:
    stop_timeout: 0
    restart: Always
    containers:
      - {image: base, name: steady, command: [/bin/sleep, "600"]}
      - {image: base, name: crash, command: [/bin/sh, -c, "echo crashing now; exit 1"]}
"""


def restart_count(container: str) -> int:
    return int(podman("container", "inspect", "--format", "{{.RestartCount}}",
                      container).strip() or 0)


def test_status_shows_a_crash_loop_as_such(
        make_project, project_name: str, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    root: Path = make_project(CRASH_SPEC)
    pod_name = f"{project_name}-loop"
    try:
        # podman may catch the pod between two restarts (Running) or not (Degraded)
        code, out, err = cli(root, "up", capsys=capsys)
        assert code in (0, 1) and "Traceback" not in out + err
        # the pod's processes (a conmon per container) must not have inherited the
        # project lock: the next cpb command would wait for it as long as the pod runs
        with (root / ".cpb" / "lock").open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        deadline = time.monotonic() + 60
        while restart_count(f"{pod_name}-crash") < 3:
            assert time.monotonic() < deadline, "podman never restarted the container"
            time.sleep(0.5)

        code, out, err = cli(root, "status", capsys=capsys)
        assert code == 1, out + err  # documented: 1 = something failed
        first, *rest = out.splitlines()
        assert first.startswith(f"loop: {pod_name} ") and "up to date" not in first
        crash = next(line for line in rest if line.split()[0] == "crash")
        assert re.search(r"\bcrash\s+restarting, \d+ restarts in \d+ s ", crash), crash
        steady = next(line for line in rest if line.split()[0] == "steady")
        assert re.search(r"\bsteady\s+running ", steady), steady

        code, out, _ = cli(root, "status", "--json", "--logs", "2", capsys=capsys)
        assert code == 1
        pod = json.loads(out)["pods"][0]
        assert pod["up_to_date"] is False and pod["healthy"] is False
        assert pod["current"] is True  # made from the spec as it is: `cpb up` cannot help
        by_name = {c["name"]: c for c in pod["containers"]}
        assert by_name["crash"]["crash_loop"] is True and by_name["crash"]["stable"] is False
        assert by_name["crash"]["restarts"] >= 3
        assert by_name["crash"]["status"].startswith("restarting, ")
        assert by_name["crash"]["logs"] == ["crashing now"] * 2
        assert by_name["steady"] | {"logs": []} == by_name["steady"] | {
            "state": "running", "restarts": 0, "crash_loop": False, "stable": True,
            "failed": False, "logs": []}

        code, out, _ = cli(root, "status", "--logs", "1", capsys=capsys)
        assert code == 1 and "    | crashing now\n" in out
    finally:
        assert cli(root, "down", capsys=capsys)[0] == 0
    assert pod_state(pod_name) == ([], {})


def test_plain_doit_in_the_starter_builds_images_and_starts_no_pod(
        tmp_path: Path, busybox_tar: Path, project_name: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "starter"
    assert main(["init", str(root)]) == 0
    capsys.readouterr()
    # the starter as `cpb init` writes it (its dodo.py, module and pod), on a busybox
    # base instead of debootstrap's (minutes here) and with this test's project name
    spec = root / "cpb.yaml"
    text = spec.read_text()
    debootstrap = "    rootfs:\n      debootstrap: {suite: bookworm, variant: minbase}\n"
    assert debootstrap in text
    text = re.sub(r"(?m)^project: .*$", f"project: {project_name}", text)
    spec.write_text(text.replace(debootstrap, "    rootfs: {tar: busybox.tar}\n"))
    shutil.copyfile(busybox_tar, root / "busybox.tar")
    pod_name = f"{project_name}-hello"
    doit = [sys.executable, "-m", "doit"]
    done = subprocess.run(doit, cwd=root, text=True, capture_output=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ok  tag:hello" in done.stdout and "pod:" not in done.stdout, done.stdout
    assert podman("image", "exists", f"localhost/{project_name}/hello:1.0") == ""
    assert pod_state(pod_name) == ([], {})
    try:
        # the pods start when asked: `doit up`
        up = subprocess.run([*doit, "up"], cwd=root, text=True, capture_output=True,
                            check=False)
        assert up.returncode == 0, up.stdout + up.stderr
        assert "ok  pod:hello" in up.stdout and "build:" not in up.stdout
        pods, containers = pod_state(pod_name)
        assert pods == [pod_name] and list(containers) == [f"{pod_name}-hello"]
    finally:
        assert main(["-f", str(spec), "down"]) == 0
