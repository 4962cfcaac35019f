"""What the templates rendered, by what they were given: a full run renders only what changed.

Rendering an image's descriptor and generated modules is a pure function of
the templates, Jinja2 and the values passed to them (`descriptor_args`,
`module_args`, before host paths are filled in). The memo maps a hash of
those values to the texts, so a `cpb plan` or `cpb build` of hundreds of
images renders only the images whose values changed, and does not import
Jinja2 at all when none did.

The memo lives in cpb's user cache folder (`~/.cache/cpb/render/`), one
file per project folder, never in the project: a project's own files, a
committed `.cpb/` included, are a stranger's, and a text taken from the memo
is a descriptor cekit obeys (its artifact paths are host files). Only cpb
writes there, and only what it rendered for the values in the key. It is
saved by the runs that save the file hashes and the validated-YAML memo (a
build's record step, a plan that finds nothing to do), keeping the entries
that run used.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
from pathlib import Path
from typing import Any

from cpb import __version__
from cpb.adapters.artifacts import user_cache_dir
from cpb.errors import StateWriteError
from cpb.resolve import render
from cpb.resolve.digest import canonical
from cpb.state import write_bytes_atomic
from cpb.util import file_identity

log = logging.getLogger(__name__)

FORMAT = 1
MAX_MEMO = 256 * 1024 * 1024  # a memo larger than this is not read: rendered afresh

Rendered = tuple[str, dict[str, str]]  # descriptor text, {path: generated module text}


def memo_file(project_root: Path) -> Path:
    where = os.path.realpath(project_root)
    return user_cache_dir() / "render" / (hashlib.sha256(where.encode()).hexdigest()[:32] + ".json")


def engine_identity() -> list[Any] | None:
    """What renders besides the templates and values: cpb's version, and by their
    identity Jinja2's installed files and the module that sets Jinja2 up
    (cpb.resolve.render: its filters and options). An upgrade of either, or an
    edit of an editable install, may render the same values differently."""
    found = importlib.util.find_spec("jinja2")
    if found is None or found.origin is None:
        return None
    try:
        return [__version__, *file_identity(os.stat(found.origin)),
                *file_identity(os.stat(render.__file__))]
    except OSError:
        return None


class RenderMemo:
    """{key: rendered} of one project; `file` None keeps it in memory only."""

    def __init__(self, file: Path | None = None, entries: dict[str, Rendered] | None = None,
                 engine: list[Any] | None = None) -> None:
        self.file = file
        self.entries: dict[str, Rendered] = dict(entries or {})
        self.engine = engine
        self.used: set[str] = set()
        self.dirty = False

    @classmethod
    def open(cls, project_root: Path) -> RenderMemo:
        """The memo of `project_root`; empty if none, unreadable, of another format or Jinja2."""
        file, engine = memo_file(project_root), engine_identity()
        entries: dict[str, Rendered] = {}
        try:
            with open(file, "rb") as handle:
                if os.fstat(handle.fileno()).st_size <= MAX_MEMO:
                    data = json.loads(handle.read())
                    if (isinstance(data, dict) and data.get("format") == FORMAT
                            and engine is not None and data.get("engine") == engine):
                        entries = _entries(data.get("entries"))
        except FileNotFoundError:
            pass
        except (OSError, ValueError):
            log.warning("%s was unreadable; descriptors are rendered afresh", file)
        return cls(file, entries, engine)

    @staticmethod
    def key(*values: Any) -> str:
        return hashlib.sha256(canonical(values)).hexdigest()

    def get(self, key: str) -> Rendered | None:
        hit = self.entries.get(key)
        if hit is not None:
            self.used.add(key)
        return hit

    def put(self, key: str, rendered: Rendered) -> None:
        self.entries[key] = rendered
        self.used.add(key)
        self.dirty = True

    def save(self) -> None:
        """Write the entries this run used, if it added any or stopped using some.

        A cache: a failure to write it is logged and the run goes on.
        """
        if self.file is None or self.engine is None:
            return
        if not self.dirty and self.used == set(self.entries):
            return
        kept = {key: self.entries[key] for key in sorted(self.used)}
        data = {"format": FORMAT, "engine": self.engine, "entries": kept}
        try:
            write_bytes_atomic(self.file, json.dumps(data, separators=(",", ":"),
                                                     ensure_ascii=False).encode(), mode=0o600)
        except StateWriteError as exc:
            log.warning("the render memo was not saved: %s", exc)
            return
        self.entries, self.dirty = kept, False


def _entries(found: Any) -> dict[str, Rendered]:
    """The well-formed entries of a memo file; anything else is left out, not trusted."""
    if not isinstance(found, dict):
        return {}
    entries: dict[str, Rendered] = {}
    for key, value in found.items():
        if (isinstance(value, list) and len(value) == 2 and isinstance(value[0], str)
                and isinstance(value[1], dict)
                and all(isinstance(k, str) and isinstance(v, str) for k, v in value[1].items())):
            entries[key] = (value[0], value[1])
    return entries
