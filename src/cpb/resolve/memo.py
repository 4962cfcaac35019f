"""The memo of validated YAML (cpb.spec.memo.SpecMemo), kept in .cpb/validated.json.

Read when a spec is loaded; saved by the runs that record their work (a
build's record step, a plan that writes the no-op record), like the file
hashes of .cpb/hashes.json. An entry is trusted only for the same file
identity and the same schemas: a cpb whose schemas changed validates every
file again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from functools import cache
from pathlib import Path

from cpb.spec.containerfile import MODULE_SCHEMA
from cpb.spec.memo import SpecMemo
from cpb.spec.schema import SCHEMA
from cpb.state import RACY_MARGIN_NS, STATE_DIR, read_state_text, write_bytes_atomic

log = logging.getLogger(__name__)

MEMO_FILE = "validated.json"


@cache
def schema_fingerprint() -> str:
    return hashlib.sha256(json.dumps([SCHEMA, MODULE_SCHEMA], sort_keys=True).encode()).hexdigest()


def memo_path(project_root: Path) -> Path:
    return project_root / STATE_DIR / MEMO_FILE


def open_memo(project_root: Path) -> SpecMemo:
    """The memo the last recording run saved; empty if none, unreadable or of another schema."""
    now = time.time_ns()
    path = memo_path(project_root)
    try:
        data = json.loads(read_state_text(path))
    except FileNotFoundError:
        data = None
    except (OSError, ValueError):
        log.warning("%s was unreadable; cpb.yaml and module.yaml files are read afresh", path)
        data = None
    entries = {}
    if isinstance(data, dict) and data.get("schema") == schema_fingerprint():
        found = data.get("entries")
        entries = found if isinstance(found, dict) else {}
    return SpecMemo(entries, now_ns=now, margin_ns=RACY_MARGIN_NS)


def save_memo(project_root: Path, memo: SpecMemo | None) -> None:
    """Write the memo if this load added to it or stopped reading some of it."""
    if memo is None or not (project_root / STATE_DIR).is_dir():
        return
    if not memo.dirty and memo.used == set(memo.entries):
        return
    entries = memo.kept()
    data = {"schema": schema_fingerprint(), "entries": entries}
    # compact: hundreds of entries, written and read by machines only
    write_bytes_atomic(memo_path(project_root), json.dumps(data, separators=(",", ":")).encode())
    memo.entries, memo.dirty = entries, False
