"""Faults that need no podman: hung commands, racing image listings, damaged state."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from cpb.errors import EnvironmentProblem
from cpb.podman import ImageStore
from cpb.runner import CommandFailed, Runner


def test_a_hung_command_is_a_failed_command_not_a_traceback(tmp_path: Path) -> None:
    runner = Runner()
    with pytest.raises(CommandFailed, match="did not finish within 0.5 s"):
        runner.run([sys.executable, "-c", "import time; time.sleep(30)"], timeout=0.5)
    log = tmp_path / "x.log"
    with pytest.raises(CommandFailed, match="did not finish within 0.5 s") as info:
        runner.run([sys.executable, "-c", "import time; time.sleep(30)"], timeout=0.5,
                   log_file=log)
    assert info.value.log_file == log


class FlakyRunner(Runner):
    """`podman images` failing like it does while another process removes images."""

    def __init__(self, failures: int, message: str) -> None:
        super().__init__()
        self.failures, self.message, self.calls = failures, message, 0

    def run(self, args: Sequence[str], **kwargs: Any) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise CommandFailed(args, 125, self.message, None)
        return json.dumps([{"Id": "abc", "Names": ["localhost/p/a:1"], "Labels": {"k": "v"}}])


RACE = ('Error: reading image "7e62": locating image with ID "7e62": image not known')


def test_image_listing_retries_a_race_with_a_concurrent_removal() -> None:
    runner = FlakyRunner(2, RACE)
    snap = ImageStore(runner).snapshot()
    assert snap.image_id("p/a:1") == "abc" and runner.calls == 3


def test_image_listing_gives_up_with_a_clear_error() -> None:
    with pytest.raises(EnvironmentProblem, match="`podman images` failed: .*image not known"):
        ImageStore(FlakyRunner(10, RACE)).snapshot()
    runner = FlakyRunner(10, "Error: permission denied")
    with pytest.raises(EnvironmentProblem, match="permission denied"):
        ImageStore(runner).snapshot()
    assert runner.calls == 1  # only a known race is retried
