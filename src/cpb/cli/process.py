"""How a `cpb` process ends."""

from __future__ import annotations

import os
import sys
from typing import NoReturn

from cpb.errors import INTERRUPT_EXITS


def exit_with(code: int) -> NoReturn:
    if code in INTERRUPT_EXITS:
        # doit's worker threads may still wait for work that will never come;
        # everything is on disk, so do not wait for them.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)
