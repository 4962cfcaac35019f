"""Faults and concurrent runs on real builds (busybox base, real cekit and podman).

cpb runs here as a real process (`python -m cpb`) so that it can be killed
with SIGKILL, interrupted with SIGINT, and run twice at once. Only processes
these tests start are signalled.
"""

from __future__ import annotations

import errno
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cpb.cli.app import main
from helpers import image_ids, module, podman

pytestmark = pytest.mark.integration
SRC = Path(__file__).resolve().parents[2] / "src"

SPEC = """
project: "@PROJECT@"
images:
  base:
    rootfs: {tar: busybox.tar}
    version: "1"
  slow:
    from: base
    modules: [m-slow]
  after-slow:
    from: slow
    modules: [m-leaf]
  other:
    from: base
    modules: [m-other]
"""
IMAGES = {"base:1", "slow:latest", "after-slow:latest", "other:latest"}


# The slow module runs for 20 s in a shell named after the project (so that
# pgrep finds it, and only it); tests act on the "slow-started" line in its
# log, never on a timer.
SLEEPER = ("sh -c 'i=0; while [ $i -lt 20 ]; do sleep 1; i=$((i+1)); done' "
           "@PROJECT@-sleeper")
FILES = {
    **module("m-slow", f"echo slow-started; {SLEEPER}; echo slow > /etc/slow"),
    **module("m-leaf", "cat /etc/slow > /etc/leaf"),
    **module("m-other", "echo other > /etc/other"),
}


_started: list[subprocess.Popen[str]] = []


@pytest.fixture(autouse=True)
def _stop_what_we_started() -> Iterator[None]:
    """A failed test must not leave its cpb (and cekit, podman) running."""
    yield
    while _started:
        proc = _started.pop()
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # cpb stops its commands' process groups
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture
def own_storage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Images and pods in a podman storage of this test's own (as test_pod_play does):
    other engineers' builds and removals on the shared storage cannot race with
    ours, nobody else's pods can be mistaken for ours, and ours go with it."""
    root = tmp_path / "podman-storage"
    root.mkdir()
    conf = root / "storage.conf"
    conf.write_text(f'[storage]\ndriver = "overlay"\ngraphroot = "{root}/graph"\n'
                    f'runroot = "{root}/run"\n')
    monkeypatch.setenv("CONTAINERS_STORAGE_CONF", str(conf))
    yield conf
    own = {**os.environ, "CONTAINERS_STORAGE_CONF": str(conf)}  # never the shared storage
    for args in (["pod", "rm", "--all", "--force", "--time", "0"],
                 ["rm", "--all", "--force", "--time", "0"], ["rmi", "--all", "--force"]):
        subprocess.run(["podman", *args], env=own, capture_output=True, check=False)
    subprocess.run(["umount", "-R", str(root / "graph" / "overlay")], capture_output=True,
                   check=False)


def start(root: Path, *argv: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    # Output goes to files, not pipes: nobody reads a pipe while a test waits.
    number = len(list(root.parent.glob("run-*.out")))
    out, err = root.parent / f"run-{number}.out", root.parent / f"run-{number}.err"
    with out.open("w") as stdout, err.open("w") as stderr:
        proc = subprocess.Popen([sys.executable, "-m", "cpb", "-f", str(root / "cpb.yaml"),
                                 *argv], stdout=stdout, stderr=stderr, text=True, env=env)
    proc.outputs = (out, err)  # type: ignore[attr-defined]
    _started.append(proc)
    return proc


def finish(proc: subprocess.Popen[str], timeout: float = 1200) -> tuple[int, str, str]:
    proc.wait(timeout=timeout)
    out, err = proc.outputs  # type: ignore[attr-defined]
    return proc.returncode, out.read_text(), err.read_text()


def wait_for(what: str, check: Callable[[], bool], proc: subprocess.Popen[str],
             logs: Path, timeout: float = 900) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if proc.poll() is not None:
            _, out, err = finish(proc)
            raise AssertionError(f"cpb ended ({proc.returncode}) before {what}:\n{out}\n{err}")
        time.sleep(0.2)
    tails = {p.name: p.read_text(errors="replace")[-2000:] for p in logs.glob("*.log")}
    raise AssertionError(f"timed out waiting for {what}; logs: {tails}")


def lock_owner(lock: Path) -> int | None:
    """The pid the project lock's record names (JSON padded with spaces)."""
    try:
        return int(json.loads(lock.read_text())["pid"])
    except (OSError, ValueError, KeyError):
        return None


def log_says(root: Path, task: str, text: str) -> Callable[[], bool]:
    path = root / ".cpb" / "logs" / f"{task}.log"
    return lambda: path.exists() and text in path.read_text(errors="replace")


def assert_state_is_whole(root: Path) -> None:
    """Every record under .cpb/ parses: nothing half-written, nothing mixed."""
    state = root / ".cpb"
    records = [*state.glob("state/*/*.json"), state / "hashes.json", state / "doit.json"]
    for path in records:
        if path.exists():
            json.loads(path.read_text())  # raises on a torn or mixed file
    leftovers = [p for p in state.rglob("*.tmp") if "build" not in p.parts]
    assert leftovers == []


def our_processes(root: Path) -> list[str]:
    """Commands still running with this project's path or name in their arguments
    (cekit, podman build, the module's sleeper in the build container)."""
    name = json.dumps(root.joinpath("cpb.yaml").read_text().split("project: ", 1)[1]
                      .split("\n", 1)[0].strip('"'))[1:-1]
    found = []
    for marker in (str(root), name):
        out = subprocess.run(["pgrep", "-af", marker], capture_output=True, text=True).stdout
        found += [line for line in out.splitlines() if "pgrep" not in line]
    return found


def plan_is_empty(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["-f", str(root / "cpb.yaml"), "plan", "--exit-code"])
    out, _ = capsys.readouterr()
    assert code == 0, out
    assert "nothing to do" in out


def test_kill_9_during_a_build_then_rerun(own_storage: Path, make_project,  # type: ignore[no-untyped-def]
                                          project_name: str,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    root = make_project(SPEC, FILES)
    first = start(root, "build")
    wait_for("the slow image's script", log_says(root, "build-slow", "slow-started"), first,
             root / ".cpb" / "logs")
    first.send_signal(signal.SIGKILL)
    first.wait(30)
    # cekit, started by the killed cpb, is still building 'slow' (its module
    # sleeps for minutes) and holds the lock it inherited; the lock names it.
    assert our_processes(root) != []
    record = json.loads((root / ".cpb" / "lock").read_text())
    assert record["pid"] == first.pid and record["groups"]
    started = time.monotonic()
    code, out, err = finish(start(root, "build"))
    assert code == 0, out + err
    # The rerun ended the orphans at once instead of waiting for them...
    assert (f"the cpb run that held this project (pid {first.pid}) has ended; "
            "stopped what it left running: cekit (pid ") in err
    assert "waiting for another cpb run" not in err
    assert "ok  build:slow" in out  # ...and built 'slow' itself
    assert time.monotonic() - started < 300
    assert "Traceback" not in err
    assert set(image_ids(project_name)) >= IMAGES
    assert_state_is_whole(root)
    plan_is_empty(root, capsys)


def test_ctrl_c_exits_130_and_leaves_nothing_running(own_storage: Path, make_project,  # type: ignore[no-untyped-def]
                                                     project_name: str,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    root = make_project(SPEC, FILES)
    proc = start(root, "build", "-j", "2")
    wait_for("the slow image's script", log_says(root, "build-slow", "slow-started"), proc,
             root / ".cpb" / "logs")
    proc.send_signal(signal.SIGINT)
    code, out, err = finish(proc, timeout=120)
    assert code == 130
    assert err.endswith("interrupted; everything finished so far is kept\n")
    assert "Traceback" not in err
    assert our_processes(root) == []  # cekit and the podman build under it stopped too
    assert "slow:latest" not in image_ids(project_name)
    assert_state_is_whole(root)
    code, out, err = finish(start(root, "build", "-j", "2"))
    assert code == 0, out + err
    assert "ok  build:slow" in out
    assert set(image_ids(project_name)) >= IMAGES
    plan_is_empty(root, capsys)


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_sigterm_and_sighup_stop_the_build_like_ctrl_c(  # type: ignore[no-untyped-def]
        own_storage: Path, make_project, project_name: str, sig: int, code: int,
        capsys: pytest.CaptureFixture[str]) -> None:
    """What CI's cancel button, `timeout`, systemd and Kubernetes send (SIGTERM), and a
    closed terminal (SIGHUP): cekit, podman and the build container are stopped."""
    root = make_project(SPEC, FILES)
    proc = start(root, "build", "-j", "2")
    wait_for("the slow image's script", log_says(root, "build-slow", "slow-started"), proc,
             root / ".cpb" / "logs")
    assert any(f"{project_name}-sleeper" in line for line in our_processes(root))
    proc.send_signal(sig)
    returncode, out, err = finish(proc, timeout=120)
    assert returncode == code, out + err
    assert err.endswith("terminated; everything finished so far is kept\n"), err
    assert err.count("terminated;") == 1 and "Traceback" not in out + err
    assert our_processes(root) == []  # cekit, podman build and the module's sleeper
    assert "slow:latest" not in image_ids(project_name)
    assert_state_is_whole(root)
    if sig == signal.SIGTERM:  # the rerun finishes the job (once is enough)
        returncode, out, err = finish(start(root, "build", "-j", "2"))
        assert returncode == 0, out + err
        assert "ok  build:slow" in out
        assert set(image_ids(project_name)) >= IMAGES
        plan_is_empty(root, capsys)


# -- a full disk: the project on a small tmpfs -----------------------------------------

@pytest.fixture
def small_disk(tmp_path: Path, busybox_tar: Path) -> Iterator[Path]:
    """A tmpfs where make_project puts the project: room for it and a few MB more."""
    where = tmp_path / "proj"
    where.mkdir()
    size = busybox_tar.stat().st_size + 4 * 1024 * 1024
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() or done.returncode}); "
                    "the full-disk case needs one (it runs as root on CI)")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill_to_the_brim(root: Path) -> Path:
    """Write a file until the file system says ENOSPC; return it (remove it to free space)."""
    filler = root / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        for size in (1 << 16, 4096, 1):
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)
    assert os.statvfs(root).f_bavail == 0
    return filler


DISK_FULL = re.compile(r"^cpb: error: no space left on device writing \.cpb/\S+.*; "
                       r"images built so far are kept$")


def assert_one_disk_full_line(out: str, err: str) -> None:
    lines = [line for line in (out + err).splitlines() if "no space left" in line.lower()]
    assert len(lines) == 1 and DISK_FULL.match(lines[0]), out + err
    assert err.splitlines()[-1] == lines[0]
    assert "Traceback" not in out + err and "FAIL" not in out


def test_a_full_disk_during_a_build_then_after_freeing_space(  # type: ignore[no-untyped-def]
        own_storage: Path, small_disk: Path, make_project, project_name: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    root = make_project(SPEC, FILES)
    assert root == small_disk
    code, out, err = finish(start(root, "build", "base"))
    assert code == 0, out + err
    doit_db = root / ".cpb" / "doit.json"
    assert json.loads(doit_db.read_text())

    # The disk fills up while cekit builds 'slow' (and 'other', -j 2).
    proc = start(root, "build", "-j", "2")
    wait_for("the slow image's script", log_says(root, "build-slow", "slow-started"), proc,
             root / ".cpb" / "logs")
    filler = fill_to_the_brim(root)
    code, out, err = finish(proc)
    assert code == 3, out + err
    assert_one_disk_full_line(out, err)
    assert json.loads(doit_db.read_text())  # doit's database: the old one, whole
    assert_state_is_whole(root)
    assert our_processes(root) == []

    # Still full: a new run says so at once, and changes nothing.
    before = {p: p.read_bytes() for p in (root / ".cpb").rglob("*.json")}
    code, out, err = finish(start(root, "build", "-j", "2"))
    assert code == 3, out + err
    assert_one_disk_full_line(out, err)
    assert {p: p.read_bytes() for p in (root / ".cpb").rglob("*.json")} == before

    # Space freed: the rerun completes, and every record is whole.
    filler.unlink()
    code, out, err = finish(start(root, "build", "-j", "2"))
    assert code == 0, out + err
    assert "Traceback" not in err
    assert set(image_ids(project_name)) >= IMAGES
    assert_state_is_whole(root)
    plan_is_empty(root, capsys)


# -- a full podman storage: that image fails, the others build --------------------------

STORAGE_SPEC = """
project: "@PROJECT@"
images:
  base:
    rootfs: {tar: busybox.tar}
    version: "1"
  big:
    from: base
    modules: [m-big]
  big-child:
    from: big
    modules: [m-leaf]
  small:
    from: base
    modules: [m-other]
"""


@pytest.fixture
def small_storage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A podman storage of this test's own on a 48 MB tmpfs."""
    root = tmp_path / "small-storage"
    graph = root / "graph"
    graph.mkdir(parents=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", str(graph)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() or done.returncode}); "
                    "the full-storage case needs one (it runs as root on CI)")
    conf = root / "storage.conf"
    conf.write_text(f'[storage]\ndriver = "overlay"\ngraphroot = "{graph}"\n'
                    f'runroot = "{root}/run"\n')
    monkeypatch.setenv("CONTAINERS_STORAGE_CONF", str(conf))
    yield conf
    own = {**os.environ, "CONTAINERS_STORAGE_CONF": str(conf)}  # never the shared storage
    for args in (["rm", "--all", "--force", "--time", "0"], ["rmi", "--all", "--force"]):
        subprocess.run(["podman", *args], env=own, capture_output=True, check=False)
    subprocess.run(["umount", "-R", str(graph / "overlay")], capture_output=True, check=False)
    subprocess.run(["umount", "-l", str(graph)], check=False)


def test_a_full_podman_storage_fails_that_image_only(  # type: ignore[no-untyped-def]
        small_storage: Path, make_project, project_name: str) -> None:
    root = make_project(STORAGE_SPEC, {
        **FILES, **module("m-big", "dd if=/dev/zero of=/big bs=1M count=96")})
    # -j 1: an image built *while* 'big' fills the storage fails too (that is a
    # full disk); one built after it, once its build container is gone, must not.
    code, out, err = finish(start(root, "build", "-j", "1"))
    log = root / ".cpb" / "logs" / "build-big.log"
    assert code == 1, out + err
    assert f"FAIL build:big: cekit exited with 1; log: {log}\n" in out
    assert "hint: no space left on device: podman's storage" in out
    assert "no space left on device" in log.read_text().lower()
    assert "FAIL build:big-child: not run: a task it needs failed" in out
    assert "ok  build:small" in out and "ok  tag:small" in out  # unrelated: built
    built = set(image_ids(project_name))
    assert "small:latest" in built and not any(t.startswith("big") for t in built)
    assert "Traceback" not in out + err and "cpb: error" not in err
    assert_state_is_whole(root)


# -- kill -9 of `cpb up` while podman plays the pod ------------------------------------

UP_SPEC = """
project: "@PROJECT@"
images:
  base:
    rootfs: {tar: busybox.tar}
  tool:
    from: base
    env: {FLAVOUR: plain}
pods:
  farm:
    stop_timeout: 1
    containers:
      - image: tool
        replicas: 3
        args: [/bin/sh, -c, "while true; do sleep 1; done"]
"""


def pods_of(project_name: str) -> list[dict[str, Any]]:
    return [p for p in json.loads(podman("pod", "ps", "--format", "json") or "[]")
            if p["Name"].startswith(project_name)]


def containers_named(prefix: str) -> list[dict[str, Any]]:
    return [c for c in json.loads(podman("ps", "--all", "--format", "json") or "[]")
            if any(n.startswith(prefix) for n in c["Names"])]


def test_kill_9_during_up_then_up_again(  # type: ignore[no-untyped-def]
        own_storage: Path, make_project, project_name: str) -> None:
    root = make_project(UP_SPEC)
    pod_name = f"{project_name}-farm"
    code, out, err = finish(start(root, "up"))
    assert code == 0, out + err
    old_id = pods_of(project_name)[0]["Id"]

    # A new version of the image; `cpb up` is killed while podman plays the new pod
    # (the old one already removed).
    spec = root / "cpb.yaml"
    spec.write_text(spec.read_text().replace("FLAVOUR: plain", "FLAVOUR: spicy"))
    (root / ".cpb" / "logs" / "pod-farm.log").unlink()
    proc = start(root, "up")
    playing = log_says(root, "pod-farm", "$ podman kube play")
    wait_for("podman kube play", lambda: log_says(root, "pod-farm", "$ podman pod rm")()
             and playing(), proc, root / ".cpb" / "logs", timeout=600)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)

    code, out, err = finish(start(root, "up"))
    assert code == 0, out + err
    assert "Traceback" not in err and "waiting for another cpb run" not in err
    assert f"pod farm: running as {pod_name}" in out
    # One pod, the new version, every container running; nothing half-made beside it.
    pods = pods_of(project_name)
    assert [p["Name"] for p in pods] == [pod_name] and pods[0]["Id"] != old_id
    assert pods[0]["Status"] == "Running"
    code, out, err = finish(start(root, "status", "--json"))
    status = json.loads(out)["pods"][0]
    assert status["up_to_date"] and status["state"] == "Running", out + err
    assert sorted(c["name"] for c in status["containers"]) == ["tool-1", "tool-2", "tool-3"]
    assert all(c["state"] == "running" for c in status["containers"])
    assert {c.get("Pod") for c in containers_named(pod_name)} == {pods[0]["Id"]}
    # nothing of the killed run (`podman kube play`, ...); the pod's own conmons run on
    assert [line for line in our_processes(root) if "conmon" not in line] == []
    code, out, err = finish(start(root, "down"))
    assert code == 0, out + err
    assert pods_of(project_name) == [] and containers_named(pod_name) == []


FAILING = """
project: "@PROJECT@"
images:
  base:
    rootfs: {tar: busybox.tar}
    version: "1"
  bad:
    from: base
    modules: [m-bad]
  bad-child:
    from: bad
    modules: [m-other]
  zgood:
    from: base
    modules: [m-other]
"""


def test_fail_fast_and_keep_going(own_storage: Path, make_project,  # type: ignore[no-untyped-def]
                                  project_name: str) -> None:
    root = make_project(FAILING, {**FILES, **module("m-bad", "echo about to fail; exit 3")})
    log = root / ".cpb" / "logs" / "build-bad.log"

    code, out, err = finish(start(root, "build", "--fail-fast"))
    assert code == 1
    assert f"FAIL build:bad: cekit exited with 1; log: {log}\n" in out
    assert "about to fail" in log.read_text()
    assert "build:zgood" not in out  # fail-fast: nothing started after the failure
    built = set(image_ids(project_name))
    assert any(t.startswith("base:cpb-") for t in built)  # built before the failure
    assert not any(t.startswith(("bad", "zgood")) for t in built)

    code, out, err = finish(start(root, "build", "--keep-going"))
    assert code == 1
    assert f"FAIL build:bad: cekit exited with 1; log: {log}\n" in out
    assert "FAIL build:bad-child: not run: a task it needs failed" in out
    assert "ok  build:zgood" in out  # everything that does not need 'bad' is built
    built = set(image_ids(project_name))
    assert "zgood:latest" in built and not any(t.startswith("bad") for t in built)
    assert "Traceback" not in out + err
    assert_state_is_whole(root)


def test_build_help_documents_both_modes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["build", "--help"]) == 0
    out = " ".join(capsys.readouterr()[0].split())  # click wraps the help text
    assert "--keep-going / -x, --fail-fast" in out
    assert "After a failure, go on with images that do not depend on it." in out


def test_two_builds_at_once_then_damaged_state(own_storage: Path, make_project,  # type: ignore[no-untyped-def]
                                               project_name: str,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    root = make_project(SPEC, {**FILES, **module("m-slow", "echo slow-started; sleep 1; "
                                                  "echo slow > /etc/slow")})
    first = start(root, "build")
    lock = root / ".cpb" / "lock"
    wait_for("the first build to take the lock",
             lambda: lock_owner(lock) == first.pid, first, root / ".cpb" / "logs")
    second = start(root, "build")
    code1, out1, err1 = finish(first)
    code2, out2, err2 = finish(second)
    assert (code1, code2) == (0, 0), out1 + err1 + out2 + err2
    assert (f"waiting for another cpb run in this project (pid {first.pid}) to finish..."
            in err2)
    assert out1.count("  ok  build:") == 4  # every image built once, by the first
    assert out2.splitlines()[-1].startswith("0 done")  # the second found them all there
    assert set(image_ids(project_name)) >= IMAGES
    assert_state_is_whole(root)

    # Damage every record: truncated, garbage, wrong shape.
    state = root / ".cpb"
    for path in state.glob("state/*/*.json"):
        path.write_text(path.read_text()[: len(path.read_text()) // 2])
    (state / "hashes.json").write_text("\x00\x00")
    (state / "doit.json").write_text('{"build:slow": 7}')
    code, out, err = finish(start(root, "plan", "--exit-code"))
    assert (code, out.splitlines()[-1]) == (0, "nothing to do: all 13 tasks up to date"), out
    assert "was unreadable; hashing files afresh" in err and "Traceback" not in err
    code, out, err = finish(start(root, "build"))
    assert code == 0, out + err
    assert out.splitlines()[-1].startswith("0 done")  # images are the truth, not records
    assert "was damaged (an interrupted run?); starting it afresh" in err
    assert_state_is_whole(root)

    # A stamp of the wrong shape, and an input change that makes plan read it.
    (state / "state" / "build" / "other.json").write_text('{"components": {"files": [1]}}')
    script = root / "modules" / "m-other" / "install.sh"
    script.write_text(script.read_text() + "echo again >> /etc/other\n")
    code, out, err = finish(start(root, "plan"))
    assert code == 0 and "Traceback" not in err
    assert "build:other\n    - the record of the last build in .cpb/ is damaged\n" in out


# -- podman's storage is never left broken ------------------------------------------------

def storage_ok() -> subprocess.CompletedProcess[str]:
    return subprocess.run(["buildah", "images", "--json", "--no-trunc"], capture_output=True,
                          text=True, check=False)


def build_with_a_sleeping_step(tmp_path: Path, busybox_tar: Path, tag: str) -> Path:
    """A Containerfile whose first step is committed as an unnamed image, and whose
    second step sleeps in a shell named after `tag` (so that pgrep finds it)."""
    subprocess.run(["podman", "import", "--quiet", str(busybox_tar), f"{tag}-base:1"],
                   check=True, capture_output=True)
    context = tmp_path / "context"
    context.mkdir()
    (context / "Containerfile").write_text(
        f"FROM {tag}-base:1\nRUN echo one > /one\n"
        f"RUN [\"sh\", \"-c\", \"echo step-started; sleep 60; echo slept\", \"{tag}-step\"]\n"
        "RUN echo two > /two\n")
    return context


def test_a_build_stopped_mid_step_ends_by_itself_and_storage_stays_listable(  # type: ignore[no-untyped-def]
        own_storage: Path, tmp_path: Path, busybox_tar: Path, project_name: str) -> None:
    """podman is not signalled while it may be committing: its step's container is
    killed, podman fails the step, removes its working container and exits."""
    from cpb.adapters.processes import stop_tree

    tag = f"localhost/{project_name}/stopped"
    context = build_with_a_sleeping_step(tmp_path, busybox_tar, tag)
    log = tmp_path / "build.log"
    with log.open("w") as out:
        proc = subprocess.Popen(["podman", "build", "-t", f"{tag}:1", str(context)], stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        # the step's own line, not podman's STEP line that quotes it
        while "step-started" not in log.read_text().splitlines() and time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()
            time.sleep(0.2)
        assert subprocess.run(["pgrep", "-f", f"{tag}-step"], capture_output=True).returncode == 0
        started = time.monotonic()
        stopped = stop_tree(proc.pid, None, grace=20, reap=proc.poll)
        took = time.monotonic() - started
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    assert "podman" in {p.name for p in stopped}
    # podman exited by itself with an error (a signal would give a negative code),
    # long before the grace period that precedes SIGTERM
    assert proc.returncode > 0 and took < 10, (proc.returncode, took, log.read_text())
    assert "Error: building at STEP" in log.read_text()
    assert subprocess.run(["pgrep", "-f", f"{tag}-step"], capture_output=True).returncode == 1
    assert subprocess.run(["buildah", "containers", "--quiet"], capture_output=True,
                          text=True, check=True).stdout.strip() == ""
    listed = storage_ok()
    assert listed.returncode == 0, listed.stderr
    assert f"{tag}:1" not in listed.stdout


def test_an_image_left_without_its_files_is_removed_by_the_next_listing(  # type: ignore[no-untyped-def]
        own_storage: Path, tmp_path: Path, busybox_tar: Path, project_name: str,
        caplog: pytest.LogCaptureFixture) -> None:
    """What a podman killed mid-commit leaves: an image recorded in storage whose
    config was never written. podman and buildah then fail every listing."""
    from cpb.adapters.podman import ImageStore
    from cpb.adapters.runner import ProcessRunner

    tag = f"localhost/{project_name}/broken"
    context = build_with_a_sleeping_step(tmp_path, busybox_tar, tag)
    containerfile = context / "Containerfile"
    containerfile.write_text(containerfile.read_text().replace("sleep 60", "true"))  # no wait
    subprocess.run(["podman", "build", "-t", f"{tag}:1", str(context)], check=True,
                   capture_output=True)
    graph = Path(subprocess.run(["podman", "info", "--format", "{{.Store.GraphRoot}}"],
                                capture_output=True, text=True, check=True).stdout.strip())
    named = set(json.loads(subprocess.run(
        ["podman", "images", "--format", "json"], capture_output=True, text=True,
        check=True).stdout)[0]["Names"] or [])
    everything = subprocess.run(["podman", "images", "--all", "--quiet", "--no-trunc"],
                                capture_output=True, text=True, check=True).stdout.split()
    unnamed = [i.removeprefix("sha256:") for i in everything
               if not json.loads(subprocess.run(["podman", "image", "inspect", i],
                                                capture_output=True, text=True,
                                                check=True).stdout)[0]["RepoTags"]]
    assert unnamed and named
    broken = unnamed[0]
    import base64
    config = graph / "overlay-images" / broken / (
        "=" + base64.b64encode(f"sha256:{broken}".encode()).decode())
    config.unlink()  # the config podman had not written yet when it was killed
    before = storage_ok()
    assert before.returncode != 0 and "consider removing the image" in before.stderr

    snapshot = ImageStore(ProcessRunner()).snapshot()

    assert f"{tag}:1" in snapshot.ids and f"{tag}-base:1" in snapshot.ids
    assert broken not in snapshot.ids.values()
    assert storage_ok().returncode == 0
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == [f"removed image {broken[:12]} from podman's storage: its files were "
                        "missing (an interrupted build leaves such an image) and every image "
                        "listing failed on it"]
