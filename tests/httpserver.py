"""A real HTTP server on loopback, in a thread, for fetch tests.

Routes, for every file in `server.files`:
  /files/NAME   the file
  /slow/NAME    the file in small pieces with pauses (about `slow_seconds` in all)
  /broken/NAME  announces the whole length, sends half, then hangs up
  /stall/NAME   sends half, then nothing until the test ends
  /flaky/NAME   503 for the first `flaky_failures` requests, then the file
  /nolength/NAME  the file without a Content-Length (ends when the connection closes)
and any path in `server.redirects` answers 302 to the location given there.
Anything else is a 404. `server.hits[path]` counts the requests per path.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class FileServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.files: dict[str, bytes] = {}
        self.redirects: dict[str, str] = {}  # path -> Location
        self.sent: Counter[str] = Counter()  # bytes of file data sent, per path
        self.hits: Counter[str] = Counter()
        self.slow_seconds = 1.0
        self.flaky_failures = 2
        self.stop = threading.Event()
        self.lock = threading.Lock()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{path}"

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client hanging up mid-answer is part of the tests


class _Handler(BaseHTTPRequestHandler):
    server: FileServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        server = self.server
        with server.lock:
            server.hits[self.path] += 1
            hits = server.hits[self.path]
        if self.path in server.redirects:
            self.send_response(302)
            self.send_header("Location", server.redirects[self.path])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        route, _, name = self.path.lstrip("/").partition("/")
        data = server.files.get(name)
        if route == "nolength" and data is not None:
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            try:
                for start in range(0, len(data), 1 << 14):
                    self.wfile.write(data[start:start + (1 << 14)])
                    with server.lock:
                        server.sent[self.path] += len(data[start:start + (1 << 14)])
            except OSError:
                pass  # the client hung up: what a size cap does
            return
        if data is None or route not in ("files", "slow", "broken", "stall", "flaky"):
            self._answer(404, b"not found\n")
            return
        if route == "flaky" and hits <= server.flaky_failures:
            self._answer(503, b"busy\n")
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if route in ("files", "flaky"):
            self.wfile.write(data)
        elif route == "slow":
            pieces = 20
            step = max(1, len(data) // pieces)
            for start in range(0, len(data), step):
                self.wfile.write(data[start:start + step])
                self.wfile.flush()
                time.sleep(server.slow_seconds / pieces)
        elif route == "broken":
            self.wfile.write(data[:len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
        else:  # stall
            self.wfile.write(data[:len(data) // 2])
            self.wfile.flush()
            server.stop.wait(30)
            self.close_connection = True

    def _answer(self, code: int, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@contextmanager
def file_server() -> Iterator[FileServer]:
    server = FileServer()
    # a short poll: shutdown() returns at once instead of after serve_forever's 0.5 s
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01},
                              daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.stop.set()
        server.shutdown()
        server.server_close()
        thread.join(5)
