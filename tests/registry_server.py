"""A real OCI registry (`docker-registry` from Debian) on loopback, for tests.

Plain HTTP on 127.0.0.1 and a port chosen free at start; its storage is a
folder the test owns, so it outlives a `stop()` and a `start()` again (on
the same port) finds every image it had.
"""

from __future__ import annotations

import json
import socket
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
{auth}"""
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


class RegistryServer:
    def __init__(self, folder: Path, users: dict[str, str] | None = None) -> None:
        """`users` {name: password}: require HTTP basic auth (htpasswd, bcrypt)."""
        self.folder = folder
        self.port = free_port()
        self.users = users or {}
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
        config.write_text(CONFIG.format(storage=self.folder / "storage", port=self.port,
                                        auth=auth))
        log = (self.folder / "registry.log").open("ab")
        self.proc = subprocess.Popen(["docker-registry", "serve", str(config)],
                                     stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"docker-registry exited: {self.log()}")
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

    def tags(self, repository: str) -> list[str]:
        """Tags of a repository, asked with skopeo (a client independent of cpb)."""
        out = subprocess.run(["skopeo", "list-tags", "--tls-verify=false",
                              f"docker://{self.url}/{repository}"],
                             capture_output=True, text=True, check=False)
        if out.returncode != 0:
            return []
        return sorted(json.loads(out.stdout)["Tags"] or [])

    def inspect(self, repository: str, tag: str) -> dict[str, Any]:
        out = subprocess.run(["skopeo", "inspect", "--tls-verify=false",
                              f"docker://{self.url}/{repository}:{tag}"],
                             capture_output=True, text=True, check=True)
        result: dict[str, Any] = json.loads(out.stdout)
        return result
