"""`cpb clean --images` while the images are in use (issue 20), on real podman.

Each test has a podman storage of its own (CONTAINERS_STORAGE_CONF): its pods,
containers and images can neither collide with anyone else's nor be mistaken
for them. cpb runs as a real process (`python -m cpb`), so what a user sees
(stdout, stderr, the exit code) is what is checked.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from cpb.resolve.podtls import pod_folder
from cpb.security.pki import Pki, default_folder
from helpers import build_file_tree, busybox_rootfs_tar, module

pytestmark = pytest.mark.integration
SRC = Path(__file__).resolve().parents[2] / "src"

SPEC = """
project: "@PROJECT@"
images:
  base:
    rootfs: {tar: busybox.tar}
  web:
    from: base
    modules: [m-web]
    cmd: [/bin/busybox, sleep, "600"]
pods:
  farm:
    containers:
      - {image: web}
"""
FILES = module("m-web", "echo web > /etc/web")


@pytest.fixture
def storage(tmp_path: Path) -> Iterator[dict[str, str]]:
    root = tmp_path / "podman-storage"
    root.mkdir()
    conf = root / "storage.conf"
    conf.write_text(f'[storage]\ndriver = "overlay"\ngraphroot = "{root}/graph"\n'
                    f'runroot = "{root}/run"\n')
    env = {**os.environ, "CONTAINERS_STORAGE_CONF": str(conf), "PYTHONPATH": str(SRC)}
    yield env
    for args in (["pod", "rm", "--all", "--force", "--time", "0"],
                 ["rm", "--all", "--force", "--time", "0"], ["rmi", "--all", "--force"]):
        subprocess.run(["podman", *args], env=env, capture_output=True, check=False)
    subprocess.run(["umount", "-R", str(root / "graph" / "overlay")], capture_output=True,
                   check=False)


@pytest.fixture
def name() -> str:
    return f"cl{uuid.uuid4().hex[:8]}"


@pytest.fixture
def project(tmp_path: Path, storage: dict[str, str], name: str) -> Path:
    root = build_file_tree(tmp_path / "proj", {"cpb.yaml": SPEC.replace("@PROJECT@", name),
                                               **FILES})
    busybox_rootfs_tar(root / "busybox.tar")
    return root


def cpb(root: Path, env: dict[str, str], *argv: str) -> tuple[int, str, str]:
    done = subprocess.run([sys.executable, "-m", "cpb", *argv], cwd=root, env=env,
                          capture_output=True, text=True, timeout=600, check=False)
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, done.stdout, done.stderr


def podman_json(env: dict[str, str], *args: str) -> list[dict[str, object]]:
    out = subprocess.run(["podman", *args, "--format", "json"], env=env, capture_output=True,
                         text=True, check=True).stdout
    return list(json.loads(out or "[]") or [])


def images(env: dict[str, str]) -> set[str]:
    """Every image name in the test's storage (podman's pause image aside)."""
    return {str(ref) for entry in podman_json(env, "images")
            for ref in (entry.get("Names") or []) if "podman-pause" not in str(ref)}  # type: ignore[attr-defined]


def containers(env: dict[str, str]) -> list[str]:
    return sorted(str(c["Names"][0]) for c in podman_json(env, "ps", "--all", "--external")  # type: ignore[index]
                  if not c.get("IsInfra"))


def state(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root / ".cpb")) for p in (root / ".cpb").rglob("*"))


def descendants(pid: int) -> list[tuple[int, str]]:
    """(pid, command line) of every process under `pid`, from /proc."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            try:
                argv = (Path("/proc") / str(child) / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            found.append((child, " ".join(a.decode(errors="replace") for a in argv)))
            todo.append(child)
    return found


@pytest.fixture
def running(project: Path, storage: dict[str, str], name: str) -> Path:
    code, out, err = cpb(project, storage, "up", "farm")
    assert code == 0, out + err
    assert containers(storage) == [f"{name}-farm-web"]
    return project


def in_use(name: str) -> str:
    return (f"cpb: error: nothing was removed: {name}/web:latest is used by pod farm "
            f"({name}-farm); stop the project's pods first (`cpb down farm`), "
            "or run `cpb clean --images --down`\n")


def test_a_running_pod_is_named_and_nothing_is_removed(running: Path, storage: dict[str, str],
                                                       name: str) -> None:
    before_images, before_state = images(storage), state(running)
    code, out, err = cpb(running, storage, "clean", "--images")
    assert (code, out, err) == (3, "", in_use(name))
    assert images(storage) == before_images and state(running) == before_state
    assert containers(storage) == [f"{name}-farm-web"]
    # what the message says works
    code, out, err = cpb(running, storage, "down", "farm")
    assert code == 0, err
    code, out, err = cpb(running, storage, "clean", "--images")
    assert code == 0, err
    assert images(storage) == set() and state(running) == ["lock"]


def test_down_stops_the_projects_pods_first(running: Path, storage: dict[str, str],
                                            name: str) -> None:
    tags = images(storage)
    assert f"localhost/{name}/web:latest" in tags
    # what `cpb up` writes for a pod with the stock NATS: its copies of the TLS files
    copies = pod_folder(Pki(default_folder(running)), f"{name}-farm")
    copies.mkdir(parents=True)
    (copies / "key.pem").write_text("a copy\n")
    code, out, err = cpb(running, storage, "clean", "--images", "--down")
    assert code == 0, err
    assert not copies.exists()
    assert out.splitlines() == [f"pod farm: removed {name}-farm",
                                f"removed {len(tags)} image tag(s)",
                                f"removed the contents of {running / '.cpb'}"]
    assert images(storage) == set() and containers(storage) == []
    assert state(running) == ["lock"]
    code, out, err = cpb(running, storage, "plan", "--exit-code")
    assert code == 1 and "build:web" in out  # a fresh start: everything to build again


def test_a_users_own_container_is_named_with_the_command_that_frees_it(
        project: Path, storage: dict[str, str], name: str) -> None:
    code, out, err = cpb(project, storage, "build")
    assert code == 0, err
    subprocess.run(["podman", "create", "--name", "mine", f"localhost/{name}/base:latest",
                    "/bin/busybox", "true"],
                   env=storage, capture_output=True, check=True)
    before_images, before_state = images(storage), state(project)
    for argv in (["clean", "--images"], ["clean", "--images", "--down"]):
        code, out, err = cpb(project, storage, *argv)
        assert (code, out) == (3, ""), err
        # not cpb's container: named, never removed, with or without --down
        assert err == (f"cpb: error: nothing was removed: {name}/base:latest is used by "
                       "container mine: remove it with `podman rm --force mine`\n")
        assert images(storage) == before_images and state(project) == before_state
    subprocess.run(["podman", "rm", "mine"], env=storage, capture_output=True, check=True)
    assert cpb(project, storage, "clean", "--images")[0] == 0
    assert images(storage) == set()


def test_the_working_container_of_an_interrupted_build_is_removed(
        project: Path, storage: dict[str, str]) -> None:
    (project / "modules/m-web/install.sh").write_text(
        "#!/bin/sh\nset -e\necho web-started\nsleep 60\necho web > /etc/web\n")
    log = project / ".cpb" / "logs" / "build-web.log"
    proc = subprocess.Popen([sys.executable, "-m", "cpb", "build"], cwd=project, env=storage,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while not (log.exists() and "web-started" in log.read_text(errors="replace")):
            assert proc.poll() is None and time.monotonic() < deadline, "the build never started"
            time.sleep(0.2)
        # what a Ctrl-C in the middle of `podman build` leaves: buildah's working container
        builds = [pid for pid, argv in descendants(proc.pid)
                  if argv.split(" ", 1)[0].endswith("podman") and " build " in argv]
        assert len(builds) == 1, descendants(proc.pid)
        os.kill(builds[0], signal.SIGINT)
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=120)
    leftovers = [c for c in podman_json(storage, "ps", "--all", "--external")
                 if c.get("State") == "storage"]
    # one for the base image, one for each intermediate image of the build
    names = sorted(str(c["Names"][0]) for c in leftovers)  # type: ignore[index]
    assert len(names) >= 1 and all(n.endswith("-working-container") for n in names), names
    code, out, err = cpb(project, storage, "clean", "--images")
    assert code == 0, err
    assert out.splitlines()[0] == (f"removed {len(names)} leftover build container(s) "
                                   f"({', '.join(names)})")
    assert containers(storage) == [] and images(storage) == set()
    assert state(project) == ["lock"]


def test_an_invalid_spec_still_cleans(running: Path, storage: dict[str, str], name: str) -> None:
    spec = running / "cpb.yaml"
    spec.write_text(spec.read_text().replace("cmd:", "cmnd:"))
    code, out, err = cpb(running, storage, "plan")
    assert code == 2 and "did you mean 'cmd'" in err  # really invalid
    code, out, err = cpb(running, storage, "clean", "--images")
    assert (code, err) == (3, in_use(name))  # `cpb down` needs a valid spec, --down does not
    code, out, err = cpb(running, storage, "clean", "--images", "--down")
    assert code == 0, err
    assert images(storage) == set() and containers(storage) == []
    assert state(running) == ["lock"]


def test_a_spec_without_a_readable_project_name_removes_nothing(
        project: Path, storage: dict[str, str], name: str) -> None:
    code, out, err = cpb(project, storage, "build")
    assert code == 0, err
    before_images, before_state = images(storage), state(project)
    spec = project / "cpb.yaml"
    spec.write_text(spec.read_text().replace(f'project: "{name}"', f"project: [{name}]"))
    code, out, err = cpb(project, storage, "clean", "--images")
    assert code == 2 and out == ""
    assert err == ("cpb: error: cannot tell which images are this project's, its 'project' "
                   "name is unreadable: cpb.yaml:1:10: project: expected a string, got a list; "
                   "nothing was removed\n")
    assert images(storage) == before_images and state(project) == before_state
    # plain `cpb clean` needs no name
    code, out, err = cpb(project, storage, "clean")
    assert code == 0 and state(project) == ["lock"]
