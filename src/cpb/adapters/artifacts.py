"""The artifact cache: url artifacts downloaded on the host, content-addressed.

Containers here cannot reach HTTPS hosts, and a reproducible build should
not download anything anyway: cpb fetches each `url` artifact once, checks
its declared checksum, and hands cekit a local file.

The cache lives outside any project (`~/.cache/cpb/artifacts`, or
`$CPB_CACHE_DIR`, or `--cache-dir`) so that every project and CI run on a
machine shares it. Its layout::

    <root>/<algorithm>/<hex>       verified files, named by their checksum
    <root>/.tmp/<key>.*.part       downloads in progress; never count as cached
    <root>/.locks/<key>.lock       flock held while one process fetches <key>

A file reaches `<algorithm>/<hex>` only by a rename after its checksum
matched, so whatever is there is right, and "is it cached?" is one stat.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

from cpb import __version__
from cpb.errors import CpbError
from cpb.util import environ_flag

log = logging.getLogger(__name__)

CACHE_ENV = "CPB_CACHE_DIR"
OFFLINE_ENV = "CPB_OFFLINE"
MAX_SIZE_ENV = "CPB_MAX_DOWNLOAD"
# An artifact without a declared `size:` may not be larger than this: a wrong
# or hostile URL must not fill the disk before its checksum is even checked.
DEFAULT_MAX_SIZE = 2 << 30  # 2 GiB
_UNITS = {"": 1, "k": 1000, "m": 1000**2, "g": 1000**3, "t": 1000**4,
          "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40}
_CHUNK = 1 << 16
# Answers worth asking again: the server or something in between is busy.
_TRANSIENT_HTTP = frozenset({408, 425, 429, 500, 502, 503, 504})

# (artifact name, bytes so far, total bytes or None when the server did not say)
Progress = Callable[[str, int, "int | None"], None]


class FetchError(CpbError):
    """An artifact could not be fetched or did not match its checksum."""


class ArtifactsMissing(FetchError):
    """--offline, and artifacts a task needs are not in the cache."""


class DownloadCancelled(FetchError):
    """cancel_downloads() stopped the download (Ctrl-C, SIGTERM); nothing was cached."""


class _Transient(Exception):
    """A failure that another attempt may not have (timeouts, resets, 5xx)."""


# Downloads run in threads, blocked in a socket read while a server stalls;
# a signal reaches only the main thread. cancel_downloads() (called when cpb is
# interrupted) shuts their sockets down, so each read returns at once, and
# keeps new attempts from starting.
_cancelled = threading.Event()
_sockets: set[socket.socket] = set()
_sockets_lock = threading.Lock()


def cancel_downloads() -> None:
    """Stop every download of this process promptly; each ends in DownloadCancelled."""
    _cancelled.set()
    with _sockets_lock:
        for sock in _sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


def allow_downloads() -> None:
    """After cancel_downloads(): let a later command of this process download again."""
    _cancelled.clear()


def _check_cancelled(name: str) -> None:
    if _cancelled.is_set():
        raise DownloadCancelled(f"fetch {name}: cancelled; nothing was cached")


def _socket_of(response: Any) -> socket.socket | None:
    """The socket an http(s) response reads from (None for a file: URL)."""
    raw = getattr(getattr(response, "fp", None), "raw", None)
    sock = getattr(raw, "_sock", None)
    return sock if isinstance(sock, socket.socket) else None


@dataclass(frozen=True)
class Download:
    """One distinct artifact: every url entry of the spec with the same checksum."""

    key: str
    checksums: tuple[tuple[str, str], ...]
    urls: tuple[str, ...]
    names: tuple[str, ...]
    size: int | None = None  # bytes, when the spec declares `size:`

    @property
    def name(self) -> str:
        return self.names[0]

    @property
    def shown(self) -> str:
        """For messages: the name(s) and a short checksum."""
        algorithm, value = self.checksums[0]
        return f"{' / '.join(self.names)} ({algorithm} {value[:12]})"


@dataclass(frozen=True)
class FetchResult:
    download: Download
    path: Path
    fetched: bool  # False: it was in the cache already
    size: int
    seconds: float


def user_cache_dir() -> Path:
    """cpb's folder in the platform's user cache folder (~/.cache/cpb)."""
    if sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "cpb"


def default_cache_dir() -> Path:
    """$CPB_CACHE_DIR, else cpb's user cache folder + artifacts."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    return user_cache_dir() / "artifacts"


def key_path(key: str) -> Path:
    """Where a cache key lives, relative to the cache root."""
    algorithm, _, value = key.rpartition("-")
    return Path(algorithm or "sha256") / value


class ArtifactCache:
    """The content-addressed artifact cache; `fetch` is safe across threads and processes."""

    def __init__(self, root: Path | None = None, *, offline: bool | None = None,
                 timeout: float = 30.0, attempts: int = 3, backoff: float = 1.0,
                 max_size: int | None = None) -> None:
        self.root = (root or default_cache_dir()).expanduser().absolute()
        # CPB_OFFLINE=1 reaches a plain `doit` in a project, which has no --offline
        self.offline = environ_flag(OFFLINE_ENV) if offline is None else offline
        self.timeout, self.attempts, self.backoff = timeout, attempts, backoff
        self.max_size = max_size if max_size is not None else default_max_size()

    def limit(self, download: Download) -> int:
        """The most bytes `download` may have: its declared size, else the cap."""
        return download.size if download.size is not None else self.max_size

    def path(self, key: str) -> Path:
        return self.root / key_path(key)

    def has(self, key: str) -> bool:
        return self.path(key).is_file()

    def missing(self, downloads: Iterable[Download]) -> list[Download]:
        return [d for d in downloads if not self.has(d.key)]

    def fetch(self, download: Download, progress: Progress | None = None) -> FetchResult:
        """Make sure the artifact is in the cache; download and verify it if not."""
        final = self.path(download.key)
        if final.is_file():
            return FetchResult(download, final, False, final.stat().st_size, 0.0)
        if self.offline:
            raise ArtifactsMissing(missing_message([download], self.root))
        started = time.monotonic()
        with self._lock(download.key):
            if final.is_file():  # another process fetched it while we waited
                return FetchResult(download, final, False, final.stat().st_size, 0.0)
            first_error: FetchError | None = None
            for url in download.urls:
                try:
                    size = self._fetch_into(final, url, download, progress)
                except FetchError as exc:
                    first_error = first_error or exc
                    continue
                return FetchResult(download, final, True, size, time.monotonic() - started)
        assert first_error is not None
        raise first_error

    def store(self, key: str, data: bytes) -> Path:
        """Put bytes cpb made itself under their sha256 `key` (a `wheel:` task)."""
        if hashlib.sha256(data).hexdigest() != key:
            raise FetchError(f"refusing to cache bytes under {key}: their sha256 differs")
        final = self.path(key)
        with self._lock(key):
            if not final.is_file():
                with self._temp_file(key) as (handle, tmp):
                    handle.write(data)
                    handle.flush()
                    os.fsync(handle.fileno())
                    self._publish(tmp, final)
        return final

    def add(self, url: str, name: str, progress: Progress | None = None) -> FetchResult:
        """Download a url whose checksum is not known yet (`cpb artifact add`)."""
        probe = Download(key="", checksums=(), urls=(url,), names=(name,))
        self._make_dirs()
        started = time.monotonic()
        with self._temp_file("new") as (handle, tmp):
            size, sums = self._download(url, probe, handle, progress)
            download = Download(key=sums["sha256"], checksums=(("sha256", sums["sha256"]),),
                                urls=(url,), names=(name,))
            final = self.path(download.key)
            with self._lock(download.key):
                if not final.is_file():
                    self._publish(tmp, final)
        return FetchResult(download, final, True, size, time.monotonic() - started)

    # -- the parts ----------------------------------------------------------

    def _make_dirs(self) -> None:
        for folder in (self.root / ".tmp", self.root / ".locks"):
            folder.mkdir(parents=True, exist_ok=True)

    def _lock(self, key: str) -> _FileLock:
        self._make_dirs()
        return _FileLock(self.root / ".locks" / f"{key}.lock")

    def _temp_file(self, key: str) -> _TempFile:
        return _TempFile(self.root / ".tmp", key)

    def _fetch_into(self, final: Path, url: str, download: Download,
                    progress: Progress | None) -> int:
        # We hold the key's lock, so any partial file of this key is a leftover
        # of a process that died: remove it.
        for stale in (self.root / ".tmp").glob(f"{download.key}.*.part"):
            stale.unlink(missing_ok=True)
        with self._temp_file(download.key) as (handle, tmp):
            size, sums = self._download(url, download, handle, progress)
            if download.size is not None and size != download.size:
                raise FetchError(f"fetch {download.name}: {url} has {size} bytes, not the "
                                 f"{download.size} of its `size:`; nothing was cached")
            for algorithm, expected in download.checksums:
                if sums[algorithm] != expected:
                    # A file: URL names a file on this machine: its hash is not
                    # the project's to learn (it may be anyone's file).
                    got = ("" if url.lower().startswith("file:")
                           else f", got {sums[algorithm]}")
                    raise FetchError(
                        f"fetch {download.name}: {algorithm} mismatch for {url}: expected "
                        f"{expected}{got}; nothing was cached")
            self._publish(tmp, final)
        log.info("fetched %s (%d bytes) into %s", download.name, size, final)
        return size

    def _publish(self, tmp: Path, final: Path) -> None:
        final.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(tmp, 0o444)  # content-addressed: never to be edited in place
        os.replace(tmp, final)

    def _download(self, url: str, download: Download, handle: IO[bytes],
                  progress: Progress | None) -> tuple[int, dict[str, str]]:
        """Fetch `url` into `handle`, retrying transient failures; (size, checksums)."""
        last: _Transient | None = None
        for attempt in range(1, self.attempts + 1):
            _check_cancelled(download.name)
            if attempt > 1:
                delay = self.backoff * 2 ** (attempt - 2)
                log.warning("fetch %s: %s; trying again in %g s", download.name, last, delay)
                _cancelled.wait(delay)
                _check_cancelled(download.name)
            handle.seek(0)
            handle.truncate()
            try:
                return self._download_once(url, download, handle, progress)
            except _Transient as exc:
                last = exc
        raise FetchError(f"fetch {download.name}: {last} "
                         f"(gave up after {self.attempts} attempts)")

    def _download_once(self, url: str, download: Download, handle: IO[bytes],
                       progress: Progress | None) -> tuple[int, dict[str, str]]:
        import http.client  # imported when fetching: a no-op run need not pay for them
        import ssl
        import urllib.request

        from cpb.adapters import redirects

        limit = self.limit(download)
        algorithms = {"sha256", *(a for a, _ in download.checksums)}
        hashers = {a: hashlib.new(a) for a in algorithms}
        host = urlsplit(url).netloc or "the local file system"
        request = urllib.request.Request(  # noqa: S310 (the schema allows http, https, file)
            url, headers={"User-Agent": f"cpb/{__version__}"})
        try:
            # Redirects only to http(s): urllib alone would follow one to ftp://.
            response = redirects.opener(urllib.request.FileHandler()).open(
                request, timeout=self.timeout)
        except redirects.RedirectRefused as exc:
            raise FetchError(f"fetch {download.name}: {url}: {exc}") from None
        except urllib.error.HTTPError as exc:
            exc.close()
            what = f"HTTP {exc.code} {exc.reason} from {url}"
            if exc.code in _TRANSIENT_HTTP:
                raise _Transient(what) from None
            raise FetchError(f"fetch {download.name}: {what}") from None
        except urllib.error.URLError as exc:
            reason = exc.reason
            if url.startswith("file:") or isinstance(reason, ssl.SSLError):
                raise FetchError(f"fetch {download.name}: {url}: {_why(reason)}") from None
            raise _Transient(f"cannot reach {host} ({_why(reason)})") from None
        except (OSError, http.client.HTTPException) as exc:
            raise _Transient(f"cannot reach {host} ({_why(exc)})") from None
        sock = _socket_of(response)
        with response, _registered(sock):
            _check_cancelled(download.name)  # cancelled while connecting
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            if total is not None and total > limit:
                raise FetchError(f"fetch {download.name}: {url} is {total} bytes, over "
                                 f"{_limit_text(download, limit)}; nothing was downloaded")
            done = 0
            try:
                while chunk := response.read(_CHUNK):
                    if done + len(chunk) > limit:
                        # Checked as the bytes arrive: a server may say nothing of
                        # the length, or lie about it.
                        raise FetchError(f"fetch {download.name}: {url} sent more than "
                                         f"{_limit_text(download, limit)}; stopped, nothing "
                                         "was cached")
                    handle.write(chunk)
                    for hasher in hashers.values():
                        hasher.update(chunk)
                    done += len(chunk)
                    if progress is not None:
                        progress(download.name, done, total)
            except TimeoutError:
                _check_cancelled(download.name)
                raise _Transient(f"{host} sent nothing for {self.timeout:g} s "
                                 f"after {done} bytes of {url}") from None
            except (OSError, http.client.HTTPException) as exc:
                _check_cancelled(download.name)
                raise _Transient(f"download of {url} broke off after {done} bytes "
                                 f"({_why(exc)})") from None
        _check_cancelled(download.name)  # a shut-down socket reads as the end of the body
        if total is not None and done != total:
            raise _Transient(f"download of {url} broke off after {done} of {total} bytes")
        handle.flush()
        os.fsync(handle.fileno())
        return done, {a: h.hexdigest() for a, h in hashers.items()}


@contextlib.contextmanager
def _registered(sock: socket.socket | None) -> Any:
    """While inside, cancel_downloads() can shut `sock` down."""
    if sock is None:
        yield
        return
    with _sockets_lock:
        _sockets.add(sock)
    try:
        yield
    finally:
        with _sockets_lock:
            _sockets.discard(sock)


def default_max_size() -> int:
    """$CPB_MAX_DOWNLOAD (bytes; a suffix k/M/G or KiB/MiB/GiB), else 2 GiB."""
    text = os.environ.get(MAX_SIZE_ENV, "").strip()
    if not text:
        return DEFAULT_MAX_SIZE
    size = parse_size(text)
    if size is None:
        raise FetchError(f"{MAX_SIZE_ENV}={text!r} is not a size (e.g. 500M, 4GiB, 1000000)")
    return size


def parse_size(text: str) -> int | None:
    """`1000`, `500M`, `4GiB` (decimal k/M/G/T, binary KiB/MiB/GiB/TiB) -> bytes."""
    number = text.rstrip("bBiIkKmMgGtT ")
    unit = text[len(number):].strip().lower().removesuffix("b")
    if unit.endswith("i"):
        unit += "b"
    if not number.isdigit() or unit not in _UNITS:
        return None
    return int(number) * _UNITS[unit]


def _limit_text(download: Download, limit: int) -> str:
    if download.size is not None:
        return f"its `size:` of {limit} bytes"
    return (f"the limit of {limit} bytes for an artifact without `size:` (declare its "
            f"`size:`, or raise ${MAX_SIZE_ENV})")


def missing_message(missing: list[Download], root: Path) -> str:
    shown = "; ".join(f"{d.shown} from {d.urls[0]}" for d in missing)
    return (f"offline, and {len(missing)} artifact(s) are not in the cache {root}: {shown}; "
            "run `cpb fetch` while online")


def _why(reason: object) -> str:
    """A short reason for a network error, without the exception's class soup."""
    import http.client

    if isinstance(reason, OSError) and reason.strerror:
        return str(reason.strerror)
    if isinstance(reason, http.client.IncompleteRead):
        return f"incomplete read, {len(reason.partial)} bytes"
    text = str(reason) or type(reason).__name__
    return text.splitlines()[0] if text else type(reason).__name__


class _FileLock:
    """An exclusive flock on a file; the kernel drops it if the process dies."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.handle: IO[str] | None = None

    def __enter__(self) -> _FileLock:
        self.handle = self.path.open("a")
        try:
            fcntl.flock(self.handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("waiting for another process fetching the same artifact (%s)", self.path)
            fcntl.flock(self.handle, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.handle is not None
        self.handle.close()  # closing releases the flock


class _TempFile:
    """A temporary file beside the cache; removed unless it was renamed into place."""

    def __init__(self, folder: Path, key: str) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=folder, prefix=f"{key}.", suffix=".part")
        self.path = Path(name)
        self.handle = os.fdopen(fd, "w+b")

    def __enter__(self) -> tuple[IO[bytes], Path]:
        return self.handle, self.path

    def __exit__(self, *exc: object) -> None:
        self.handle.close()
        self.path.unlink(missing_ok=True)
