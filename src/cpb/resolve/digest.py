"""Stable hashing: canonical JSON, file hashes with a stat-keyed cache.

An image's input digest is the hash of its *components* (see
`resolve.image_components`); keeping the components, not just the digest,
is what lets `cpb plan` say which input changed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

from cpb.state import read_state_text, write_bytes_atomic
from cpb.util import file_identity

log = logging.getLogger(__name__)
_CHUNK = 1 << 20


_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                              default=str)


def canonical(value: Any) -> bytes:
    return _CANONICAL.encode(value).encode()


def digest_of(value: Any) -> str:
    return hashlib.sha256(canonical(value)).hexdigest()


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def sha256_file(path: str | Path) -> str:
    return hash_file(path, "sha256")


def hash_file(path: str | Path, algorithm: str) -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class FileHasher:
    """sha256 of files, re-read only when size, mtime, inode or ctime changed.

    Artifacts can be large; re-hashing them on every no-op `cpb plan` would
    make the no-op cost grow with their size.
    """

    def __init__(self, cache_file: Path | None = None) -> None:
        self.cache_file = cache_file
        self._cache: dict[str, list[Any]] = {}
        self._dirty = False
        self._read: dict[str, list[int]] = {}  # path: file_identity of the stat it was read by
        if cache_file is not None:
            self._cache = _read_cache(cache_file)

    def hash(self, path: str | Path, st: os.stat_result | None = None) -> str:
        """sha256 of the file; `st`, when given, is its stat taken just before."""
        st = st or os.stat(path)
        key = str(path)
        self._read[key] = file_identity(st)
        # ctime too: an edit that keeps size and mtime (a tool restoring the
        # mtime, a write within the clock's tick) still moves the ctime
        stamp = [st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns]
        hit = self._cache.get(key)
        if hit is not None and _cache_entry_ok(hit, stamp):
            return str(hit[4])
        value = sha256_file(path)
        self._cache[key] = [*stamp, value]
        self._dirty = True
        return value

    def files_read(self) -> dict[str, list[int]]:
        """Every file hashed so far (what the digests of this run depend on), with
        the identity (cpb.util.file_identity) of the stat its hash stands for."""
        return dict(self._read)

    def save(self) -> None:
        """Write the hashes of the files this run read (a run resolves every image,
        so the others are of files gone or of the project's old folder)."""
        if self.cache_file is None or not (self._dirty or self._cache.keys() != self._read.keys()):
            return
        kept = {k: v for k, v in self._cache.items() if k in self._read and _cache_entry_ok(v)}
        # compact: thousands of entries, written and read by machines only
        write_bytes_atomic(self.cache_file, json.dumps(kept, separators=(",", ":")).encode())
        self._cache, self._dirty = kept, False


def _read_cache(path: Path) -> dict[str, list[Any]]:
    try:
        data = json.loads(read_state_text(path))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError):
        log.warning("%s was unreadable; hashing files afresh", path)
        return {}
    # Entries are checked when looked up (`FileHasher.hash`) or saved: a bad
    # one is only ever a miss, and checking the thousands of a big project
    # here cost more than comparing them with a stat.
    return data if isinstance(data, dict) else {}


def _cache_entry_ok(entry: Any, stamp: list[int] | None = None) -> bool:
    """[size, mtime_ns, inode, ctime_ns, sha256 hex] (with `stamp` as its first
    four): anything else is ignored, not trusted."""
    return (isinstance(entry, list) and len(entry) == 5
            and (entry[:4] == stamp if stamp is not None
                 else all(type(n) is int for n in entry[:4]))
            and isinstance(entry[4], str) and len(entry[4]) == 64)
