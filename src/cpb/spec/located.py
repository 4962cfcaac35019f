"""What a parsed YAML document is made of (positions kept), and its limits."""

from __future__ import annotations

from dataclasses import dataclass

MAX_NODES = 200_000  # after alias expansion; real specs have a few thousand
MAX_BYTES = 5 * 1024 * 1024
# Scalar text after alias expansion: one 1 MiB string aliased 1,000 times is a
# few nodes but a gigabyte once every later step (schema, digest, render)
# copies it.
MAX_EXPANDED_BYTES = 4 * MAX_BYTES


@dataclass(frozen=True)
class Mark:
    line: int  # 1-based
    column: int  # 1-based


class Located(dict):  # type: ignore[type-arg]
    """A mapping that knows where it and each of its keys and values start."""

    mark: Mark
    key_marks: dict[str, Mark]
    value_marks: dict[str, Mark]


class LocatedList(list):  # type: ignore[type-arg]
    mark: Mark
    item_marks: list[Mark]
