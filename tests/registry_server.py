"""A real OCI registry (`docker-registry` from Debian) on loopback, for tests.

Plain HTTP on 127.0.0.1 and a port chosen free at start (or HTTPS with
`tls=(cert, key)`, and mutual TLS with `client_ca`); its storage is a folder
the test owns, so it outlives a `stop()` and a `start()` again (on the same
port) finds every image it had.
"""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

CONFIG = """\
version: 0.1
log:
  level: warn
  accesslog: {{disabled: true}}
storage:
  filesystem: {{rootdirectory: {storage}}}
  delete: {{enabled: true}}
http:
  addr: 127.0.0.1:{port}
{tls}{auth}"""
AUTH = """\
auth:
  htpasswd:
    realm: cpb-test
    path: {htpasswd}
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


TLS = """\
  tls:
    certificate: {cert}
    key: {key}
"""
CLIENT_CAS = """\
    clientcas: [{ca}]
"""


class RegistryServer:
    def __init__(self, folder: Path, users: dict[str, str] | None = None, *,
                 tls: tuple[Path, Path] | None = None, client_ca: Path | None = None) -> None:
        """`users` {name: password}: require HTTP basic auth (htpasswd, bcrypt).

        `tls` (certificate, key): serve HTTPS; `client_ca`: and require a client
        certificate signed by that CA (mutual TLS)."""
        self.folder = folder
        self.port = free_port()
        self.users = users or {}
        self.tls, self.client_ca = tls, client_ca
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        config = self.folder / "config.yml"
        config.parent.mkdir(parents=True, exist_ok=True)
        auth = ""
        if self.users:
            import bcrypt

            htpasswd = self.folder / "htpasswd"
            htpasswd.write_text("".join(
                f"{user}:{bcrypt.hashpw(pw.encode(), bcrypt.gensalt(rounds=4)).decode()}\n"
                for user, pw in self.users.items()))
            auth = AUTH.format(htpasswd=htpasswd)
        tls = ""
        if self.tls:
            tls = TLS.format(cert=self.tls[0], key=self.tls[1])
            if self.client_ca:
                tls += CLIENT_CAS.format(ca=self.client_ca)
        config.write_text(CONFIG.format(storage=self.folder / "storage", port=self.port,
                                        tls=tls, auth=auth))
        log = (self.folder / "registry.log").open("ab")
        self.proc = subprocess.Popen(["docker-registry", "serve", str(config)],
                                     stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"docker-registry exited: {self.log()}")
            if self.tls:
                # Up once it completes a TLS handshake (trusting nothing yet).
                try:
                    with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                        context = ssl.create_default_context()
                        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
                        with context.wrap_socket(sock):
                            return
                except (ssl.SSLError, OSError):
                    time.sleep(0.05)
                    continue
            try:
                with urllib.request.urlopen(f"http://{self.url}/v2/", timeout=1):
                    return
            except urllib.error.HTTPError as exc:
                exc.close()
                if exc.code == 401:  # up, and asking for credentials
                    return
                time.sleep(0.05)
            except (urllib.error.URLError, OSError):
                time.sleep(0.05)
        raise RuntimeError(f"docker-registry did not answer on {self.url}: {self.log()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def log(self) -> str:
        path = self.folder / "registry.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""

    def _verify(self) -> str:
        # With TLS, skopeo checks the certificate (certs.d, like podman); the
        # tests that serve TLS put the CA there.
        return "--tls-verify=true" if self.tls else "--tls-verify=false"

    def tags(self, repository: str) -> list[str]:
        """Tags of a repository, asked with skopeo (a client independent of cpb)."""
        out = subprocess.run(["skopeo", "list-tags", self._verify(),
                              f"docker://{self.url}/{repository}"],
                             capture_output=True, text=True, check=False)
        if out.returncode != 0:
            return []
        return sorted(json.loads(out.stdout)["Tags"] or [])

    def inspect(self, repository: str, tag: str) -> dict[str, Any]:
        out = subprocess.run(["skopeo", "inspect", self._verify(),
                              f"docker://{self.url}/{repository}:{tag}"],
                             capture_output=True, text=True, check=True)
        result: dict[str, Any] = json.loads(out.stdout)
        return result
