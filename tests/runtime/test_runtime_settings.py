"""Environment of each component, and connecting: no server needed."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from runtime_pod import SRC, free_port, run

from cpb_runtime import Client, ConfigError, NatsSettings, Unreachable
from cpb_runtime.settings import MajorDomoSettings, WorkerSettings


def test_worker_kind_and_name_default_to_the_container_name() -> None:
    settings = WorkerSettings.from_env({"CP_CONTAINER_NAME": "worker-gcc-2"})
    assert (settings.kind, settings.name) == ("worker-gcc", "worker-gcc-2")
    explicit = WorkerSettings.from_env({"CP_CONTAINER_NAME": "w-1", "CP_WORKER_KIND": "gcc",
                                        "CP_WORKER_NAME": "a.b", "CP_WORKER_SLOTS": "3"})
    assert (explicit.kind, explicit.name, explicit.slots) == ("gcc", "a-b", 3)
    assert WorkerSettings.from_env({}, default_kind="clang").kind == "clang"
    assert WorkerSettings.from_env({"CP_WORKER_KIND": "k"}).slots >= 1


@pytest.mark.parametrize(("env", "message"), [
    ({}, "set CP_WORKER_KIND"),
    ({"CP_WORKER_KIND": "g.c"}, "not a valid name"),
    ({"CP_WORKER_KIND": "gcc", "CP_WORKER_SLOTS": "lots"}, "CP_WORKER_SLOTS='lots': not a whole"),
    ({"CP_WORKER_KIND": "gcc", "CP_WORKER_SLOTS": "0"}, "must be at least 1"),
    ({"CP_WORKER_KIND": "gcc", "CP_HEARTBEAT_INTERVAL": "-1"}, "must be above 0"),
])
def test_bad_worker_settings_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        WorkerSettings.from_env(env)


def test_majordomo_and_nats_settings() -> None:
    md = MajorDomoSettings.from_env({"CP_ACK_WAIT": "4", "CP_MAX_DELIVER": "5"})
    assert (md.ack_wait_s, md.max_deliver, md.cancel_grace_s) == (4.0, 5, 8.0)
    assert NatsSettings.from_env({}).url == "nats://127.0.0.1:4222"
    assert NatsSettings.from_env({}).tls_context() is None
    with pytest.raises(ConfigError, match="set together"):
        NatsSettings.from_env({"CP_NATS_CERT": "/c.pem"})
    with pytest.raises(ConfigError, match="cannot load the TLS files"):
        NatsSettings(ca_file="/nonexistent/ca.pem").tls_context()


def test_a_client_says_at_once_when_nats_is_unreachable() -> None:
    started = time.monotonic()
    with pytest.raises(Unreachable, match="connection refused"):
        run(Client.connect(NatsSettings(url=f"nats://127.0.0.1:{free_port()}")))
    assert time.monotonic() - started < 5


def test_a_component_with_a_bad_setting_exits_2_with_one_line() -> None:
    proc = subprocess.run([sys.executable, "-m", "cpb_runtime.worker"], capture_output=True,
                          text=True, timeout=60, env={"PYTHONPATH": str(SRC),
                                                      "CP_WORKER_KIND": "gcc",
                                                      "CP_WORKER_SLOTS": "many"})
    assert proc.returncode == 2
    assert proc.stderr == "cpb_runtime.worker: CP_WORKER_SLOTS='many': not a whole number\n"


def test_the_runtime_imports_nothing_but_the_standard_library_and_nats() -> None:
    code = ("import sys; before = set(sys.modules); "  # what site's .pth files loaded
            "import cpb_runtime, cpb_runtime.majordomo, cpb_runtime.worker; "
            "top = {m.split('.')[0] for m in set(sys.modules) - before}; "
            "print(' '.join(sorted(top - set(sys.stdlib_module_names))))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, env={"PYTHONPATH": str(SRC)}, check=True)
    assert proc.stdout.split() == ["cpb_runtime", "nats"]
