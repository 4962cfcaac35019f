"""Download progress for the terminal: `cpb fetch` and `cpb artifact add`."""

from __future__ import annotations

import time
from collections.abc import Callable


class ProgressLines:
    """Progress of large downloads as plain lines (parallel downloads interleave cleanly).

    At most one line per download per `every` seconds, and only for downloads
    of at least `min_size` bytes (or of unknown size once they pass it).
    """

    def __init__(self, write: Callable[[str], None], *, min_size: int = 1 << 20,
                 every: float = 1.0) -> None:
        self.write, self.min_size, self.every = write, min_size, every
        self.last: dict[str, float] = {}

    def __call__(self, name: str, done: int, total: int | None) -> None:
        if (total if total is not None else done) < self.min_size:
            return
        now = time.monotonic()
        finished = total is not None and done >= total
        if not finished and now - self.last.get(name, 0.0) < self.every:
            return
        self.last[name] = now
        if total:
            self.write(f"  {name}: {_mb(done)} of {_mb(total)} MB ({100 * done // total}%)")
        else:
            self.write(f"  {name}: {_mb(done)} MB")


def _mb(size: int) -> str:
    return f"{size / 1e6:.1f}"
