"""What a YAML file of the project held once it passed its schema, by the file's identity.

Parsing and validating is most of what loading a spec costs: a cpb.yaml of
hundreds of images, a module.yaml per module. A file whose size, mtime,
ctime and inode are those it had when it was validated need not be parsed
again. The identity cannot be forged by a stranger's committed `.cpb/` (a
checkout gets new inodes and ctimes, and no call sets a ctime back), and an
entry is only made for a file whose ctime is older than the read by
`margin_ns`, so a write within a coarse clock's tick is not mistaken for the
content read. Only the schema's verdict is remembered: every check after it
(names, files, the user's consent, modules installed) runs on every load.
Reading and saving the memo are the caller's (cpb.resolve.memo): this layer
does no I/O of cpb's own state.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from cpb.util import file_identity


class SpecMemo:
    def __init__(self, entries: dict[str, Any] | None = None, *, now_ns: int = 0,
                 margin_ns: int = 0) -> None:
        self.entries: dict[str, Any] = dict(entries or {})
        self.used: set[str] = set()  # a save keeps these: a file no longer read drops out
        self.dirty = False
        self._limit = now_ns - margin_ns

    def get(self, path: str | Path, st: os.stat_result) -> Any | None:
        hit = self.entries.get(str(path))
        if isinstance(hit, list) and len(hit) == 2 and hit[0] == file_identity(st):
            self.used.add(str(path))
            return hit[1]
        return None

    def put(self, path: str | Path, st: os.stat_result, value: Any) -> None:
        if st.st_ctime_ns >= self._limit:
            return  # too recent to be sure the content read is the content now
        try:
            plain = json.loads(json.dumps(value))  # what a memo file can hold
        except (TypeError, ValueError):
            return  # a YAML date or the like: parsed every time
        self.entries[str(path)] = [file_identity(st), plain]
        self.used.add(str(path))
        self.dirty = True

    def kept(self) -> dict[str, Any]:
        """The entries worth saving: those of the files this load read."""
        return {path: self.entries[path] for path in sorted(self.used)}


def stat_or_none(file: str | Path) -> os.stat_result | None:
    try:
        return os.stat(file)
    except OSError:
        return None  # the loader says what is wrong with it
