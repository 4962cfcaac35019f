"""A real nats-server with cpb's own CA and rendered nats.conf (issue 14): mutual
TLS, one user per role. Used by test_runtime_mtls.py and by
tests/benchmarks/runtime_bench.py (--tls, --compare)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterable
from pathlib import Path

from runtime_pod import NATS_SERVER, NatsServer, free_port, wait_until

from cpb.security import natsconf
from cpb.security.pki import MAJORDOMO_ROLE, SUBMITTER_ROLE, Pki, worker_role
from cpb_runtime import NatsSettings


class TlsNatsServer(NatsServer):
    conf: Path

    @property
    def url(self) -> str:
        return f"tls://127.0.0.1:{self.port}"

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen([NATS_SERVER, "-c", str(self.conf)],
                                         stdout=log, stderr=subprocess.STDOUT)
        wait_until(self._listening, 10, f"nats-server on port {self.port}")

    def reload(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(1)  # SIGHUP: nats-server re-reads its files


def tls_server(folder: Path, pki: Pki, kinds: Iterable[str], *,
               monitor_port: int | None = None) -> TlsNatsServer:
    """A server (not started) whose nats.conf natsconf.render() wrote for ``kinds``,
    with this PKI's certificates; ``monitor_port``: nats-server's /varz there."""
    kinds = tuple(kinds)
    pki.ensure([MAJORDOMO_ROLE, SUBMITTER_ROLE, *map(worker_role, kinds)])
    files = pki.files("nats")
    port = free_port()
    server = TlsNatsServer(port, folder / "js", folder / "nats-server.log",
                           monitor_port=monitor_port)
    server.conf = folder / "nats.conf"
    text = natsconf.render(kinds, natsconf.TlsPaths(str(files.cert), str(files.key),
                                                     str(files.ca)),
                           port=port, host="127.0.0.1", store_dir=str(folder / "js"))
    if monitor_port:
        text += f'http: "127.0.0.1:{monitor_port}"\n'
    server.conf.write_text(text)
    return server


def role_env(pki: Pki, role: str) -> dict[str, str]:
    f = pki.files(role)
    return {"CP_NATS_CA": str(f.ca), "CP_NATS_CERT": str(f.cert), "CP_NATS_KEY": str(f.key)}


def role_settings(url: str, pki: Pki, role: str) -> NatsSettings:
    f = pki.files(role)
    return NatsSettings(url=url, ca_file=str(f.ca), cert_file=str(f.cert), key_file=str(f.key))
