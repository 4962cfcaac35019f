"""Small helpers every layer may use: they know nothing of cpb's concepts."""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from typing import Any


def did_you_mean(word: str, choices: list[str]) -> str:
    """` (did you mean 'x'?)` for the closest of `choices`, or nothing."""
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """`over` merged into `base`: mappings key by key, anything else replaced."""
    result = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(result.get(key), Mapping):
            result[key] = deep_merge(result[key], value)
        else:
            result[key] = value
    return result


def environ_flag(name: str) -> bool:
    """An environment variable set to something other than empty, 0, false or no."""
    return os.environ.get(name, "") not in ("", "0", "false", "no")


def file_identity(st: os.stat_result) -> list[int]:
    """[size, mtime_ns, ctime_ns, inode]: a file whose identity is unchanged was not written
    since (a write moves the ctime, no call sets it back, a checkout gives new inodes)."""
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]
