"""Helpers of the runtime's tests: a real nats-server, MajorDomo and workers as
subprocesses. Fixtures using them are in conftest.py."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from cpb_runtime import Client, NatsSettings

SRC = Path(__file__).resolve().parents[2] / "src"
NATS_SERVER = shutil.which("nats-server") or "/usr/sbin/nats-server"
T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run(coro: Awaitable[T]) -> T:
    return asyncio.run(coro)  # type: ignore[arg-type]


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


async def wait_until_async(check: Callable[[], Awaitable[bool]], timeout: float,
                           what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


@dataclass
class NatsServer:
    port: int
    store_dir: Path
    log: Path
    monitor_port: int | None = None  # nats-server's HTTP monitoring (/varz), if wanted
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [NATS_SERVER, "-a", "127.0.0.1", "-p", str(self.port), "-js",
                 "-sd", str(self.store_dir),
                 *(["-m", str(self.monitor_port)] if self.monitor_port else [])],
                stdout=log, stderr=subprocess.STDOUT)
        wait_until(self._listening, 10, f"nats-server on port {self.port}")

    def _listening(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"nats-server exited: {self.log.read_text()[-2000:]}")
        with socket.socket() as sock:
            return sock.connect_ex(("127.0.0.1", self.port)) == 0

    def monitor(self, endpoint: str) -> dict[str, Any]:
        """One of the server's monitoring endpoints (``varz``: message and byte
        counters; ``connz``: the same per connection); needs ``monitor_port``."""
        assert self.monitor_port, "started without a monitoring port"
        with urllib.request.urlopen(f"http://127.0.0.1:{self.monitor_port}/{endpoint}",
                                    timeout=5) as answer:
            return dict(json.load(answer))

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


FAST = {
    "CP_ACK_WAIT": "2",
    "CP_MAX_DELIVER": "3",
    "CP_HEARTBEAT_INTERVAL": "0.3",
    "CP_STARTUP_GRACE": "1",
    "CP_CANCEL_GRACE": "5",
    "CP_WORKER_DRAIN_TIMEOUT": "3",
    "CP_LOG_LEVEL": "INFO",
}


@dataclass
class Pod:
    """A MajorDomo and workers around one nats-server, as subprocesses."""

    nats: NatsServer
    dir: Path
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    settings: dict[str, str] = field(default_factory=lambda: dict(FAST))

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CP_")}
        env.update(self.settings)
        env.update(CP_NATS_URL=self.nats.url,
                   PYTHONPATH=os.pathsep.join(filter(None, [str(SRC),
                                                            os.environ.get("PYTHONPATH")])))
        env.update(extra)
        return env

    def log(self, name: str) -> Path:
        return self.dir / f"{name}.log"

    def _start(self, name: str, module: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
        old = self.procs.get(name)
        assert old is None or old.poll() is not None, f"{name} is already running"
        with self.log(name).open("ab") as log:
            proc = subprocess.Popen([sys.executable, "-m", module], env=env,
                                    stdout=log, stderr=subprocess.STDOUT, cwd=self.dir)
        self.procs[name] = proc
        return proc

    def start_majordomo(self, **extra: str) -> subprocess.Popen[bytes]:
        return self._start("majordomo", "cpb_runtime.majordomo", self.env(**extra))

    def start_worker(self, name: str, kind: str = "test", slots: int = 2,
                     **extra: str) -> subprocess.Popen[bytes]:
        env = self.env(CP_WORKER_KIND=kind, CP_WORKER_NAME=name, CP_WORKER_SLOTS=str(slots),
                       **extra)
        return self._start(name, "cpb_runtime.worker", env)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        proc = self.procs[name]
        proc.send_signal(sig)
        if sig == signal.SIGKILL:
            proc.wait(10)

    def alive(self, name: str) -> bool:
        return name in self.procs and self.procs[name].poll() is None

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
        for proc in self.procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)

    def logs(self) -> str:
        return "\n".join(f"--- {path.name}\n{path.read_text(errors='replace')[-6000:]}"
                         for path in sorted(self.dir.glob("*.log")))

    async def client(self, **options: Any) -> Client:
        options.setdefault("poll_s", 0.5)
        options.setdefault("patience_s", 30.0)
        return await Client.connect(NatsSettings(url=self.nats.url), **options)

    async def wait_ready(self, client: Client, *workers: str, timeout: float = 15.0) -> None:
        """Until MajorDomo answers and lists these workers as bound to their consumer."""
        async def ready() -> bool:
            try:
                infos = await client.workers(patience_s=0.3)
            except Exception:
                return False
            ready = {w.name for w in infos if w.ready}
            return all(w in ready for w in workers)

        await wait_until_async(ready, timeout, f"workers {workers} ready")


def pid_gone(pid: int) -> bool:
    """True when the process does not exist any more (or is a zombie awaiting its reaper)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def python_task(code: str) -> list[str]:
    """A task's argv running a Python snippet (argv, never a shell)."""
    return [sys.executable, "-c", code]
