"""`cpb build -j N` interrupted while a fetch: task's server stalls mid-body (issue 20).

The download runs in one of doit's threads (or doit's main thread with -j 1),
blocked in a socket read; cpb's signal handling shuts its socket down, so the
build ends at once with the documented code and the download removes its
partial file (without that, the process ended with the `.part` file left
behind). Real cpb in a subprocess, its listing of local storage from real
podman (a storage of the test's own).
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import build_file_tree
from httpserver import FileServer, file_server

pytestmark = pytest.mark.integration
SRC = Path(__file__).resolve().parents[2] / "src"
BIG = os.urandom(3 << 20)


@pytest.fixture
def server() -> Iterator[FileServer]:
    with file_server() as running:
        running.files["big.bin"] = BIG
        yield running


@pytest.mark.parametrize(("jobs", "sig", "code"), [
    ("2", signal.SIGINT, 130), ("2", signal.SIGTERM, 143), ("1", signal.SIGINT, 130)])
def test_a_build_stops_at_once_while_a_download_stalls(
        server: FileServer, tmp_path: Path, jobs: str, sig: int, code: int) -> None:
    storage = tmp_path / "storage"
    storage.mkdir()
    (storage / "storage.conf").write_text(
        f'[storage]\ndriver = "overlay"\ngraphroot = "{storage}/graph"\n'
        f'runroot = "{storage}/run"\n')
    url = server.url("/stall/big.bin")
    root = build_file_tree(tmp_path / "proj", {"cpb.yaml": (
        "project: dl\nimages:\n  w:\n    from: docker.io/library/busybox:1\n    artifacts:\n"
        f"      - {{url: '{url}', sha256: {hashlib.sha256(BIG).hexdigest()}}}\n")})
    env = {**os.environ, "PYTHONPATH": str(SRC),
           "CONTAINERS_STORAGE_CONF": str(storage / "storage.conf")}
    cache = tmp_path / "cache"
    process = subprocess.Popen([sys.executable, "-m", "cpb", "--cache-dir", str(cache), "build",
                                "-j", jobs], cwd=root, env=env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not any(p.stat().st_size > 0 for p in (cache / ".tmp").glob("*.part")):
            assert time.monotonic() < deadline and process.poll() is None, process.communicate()
            time.sleep(0.05)
        time.sleep(0.3)  # into the stall
        process.send_signal(sig)
        started = time.monotonic()
        out, err = process.communicate(timeout=30)
        took = time.monotonic() - started
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == code, (out, err)
    assert took < 5, took
    assert "Traceback" not in out + err
    assert err.rstrip("\n").endswith("everything finished so far is kept"), err
    assert list((cache / ".tmp").glob("*.part")) == []
    assert not (cache / "sha256" / hashlib.sha256(BIG).hexdigest()).exists()
    subprocess.run(["umount", "-R", str(storage / "graph" / "overlay")], capture_output=True,
                   check=False)
