"""Reading YAML with positions, refusing what PyYAML would accept silently.

Mappings come back as `Located` dicts that remember where each key and value
starts, so validation can say `cpb.yaml:12:5`. Duplicate keys are an error
(PyYAML keeps the last one), and aliases are limited so that a "billion
laughs" document cannot exhaust memory. The loader itself is
cpb.spec.yamlparse, imported only when a file is parsed: a run whose specs
are all known (cpb.spec.memo) does not import PyYAML.
"""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

from cpb.errors import SpecError
from cpb.spec.located import MAX_BYTES, Located, LocatedList, Mark

__all__ = ["Located", "LocatedList", "Mark", "load_yaml", "parse_yaml"]


def load_yaml(path: Path, display: str | None = None) -> Any:
    """Parse one YAML document; every failure is a `SpecError` naming the file."""
    name = display or str(path)
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            # a FIFO would block, /dev/zero would never end
            raise SpecError("not a regular file", file=name)
        if info.st_size > MAX_BYTES:
            raise SpecError(f"file is {info.st_size} bytes; the limit is {MAX_BYTES}", file=name)
        with path.open("rb") as handle:
            data = handle.read(MAX_BYTES + 1)  # the file may grow after stat()
        if len(data) > MAX_BYTES:
            raise SpecError(f"file is over the limit of {MAX_BYTES} bytes", file=name)
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(f"not UTF-8 text (byte {exc.start})", file=name) from None
    except FileNotFoundError:
        raise SpecError("file not found", file=name) from None
    except OSError as exc:
        raise SpecError(f"cannot read: {exc.strerror}", file=name) from None
    return parse_yaml(text, name)


def parse_yaml(text: str, name: str) -> Any:
    """Parse one YAML document (`name`: how errors name it)."""
    from cpb.spec.yamlparse import parse  # PyYAML: only when something is parsed

    return parse(text, name)
