"""Real parts for the runtime's tests: a nats-server with JetStream on a free
loopback port, MajorDomo and workers as real subprocesses (``python -m``).

Timings are shortened through the components' own environment variables
(ack wait 2 s, heartbeats every 0.3 s), never by faking NATS.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from runtime_pod import NatsServer, Pod, free_port


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.runtime)


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    server = NatsServer(free_port(), tmp_path / "jetstream", tmp_path / "nats-server.log")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def pod(nats_server: NatsServer, tmp_path: Path) -> Iterator[Pod]:
    work = tmp_path / "pod"
    work.mkdir()
    the_pod = Pod(nats_server, work)
    yield the_pod
    the_pod.stop_all()
    print(the_pod.logs())  # shown by pytest when the test failed
