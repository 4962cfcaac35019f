"""Where cpb's own templates live: inside the wheel, or in a source checkout."""

from __future__ import annotations

from functools import cache
from pathlib import Path


@cache
def templates_dir() -> Path:
    packaged = Path(__file__).with_name("templates")
    if packaged.is_dir():
        return packaged
    # Running from a source checkout (editable install): the top-level folder.
    return Path(__file__).resolve().parents[2] / "templates"


@cache
def builtin_modules_dir() -> Path:
    return templates_dir() / "modules"
