"""ImageStore keeps its snapshot current after its own changes (issue 6).

Listing local storage is the expensive podman call; after a build, tag or
import the store patches its snapshot instead of listing again.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cpb.podman import ImageStore
from cpb.runner import CommandFailed, Runner


class FakePodman(Runner):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[list[str]] = []

    def run(self, args: Sequence[str], **kw: Any) -> str:
        self.calls.append(list(args))
        self.started[args[0]] += 1
        if args[1] == "images":
            return json.dumps([{"Id": "aaa", "Names": ["localhost/p/a:cpb-1"],
                                "Labels": {"io.cpb.digest": "d1"}}])
        if args[1:3] == ["image", "inspect"]:
            if args[3].endswith("missing:1"):
                raise CommandFailed(args, 125, "image not known", None)
            return json.dumps([{"Id": "bbb", "RepoTags": ["localhost/p/b:cpb-2"],
                                "Labels": {"io.cpb.digest": "d2"}}])
        return ""


def test_tag_and_refresh_patch_the_snapshot_without_listing_again(tmp_path: Path) -> None:
    runner = FakePodman()
    store = ImageStore(runner)
    assert store.snapshot().label("p/a:cpb-1", "io.cpb.digest") == "d1"
    store.tag("localhost/p/a:cpb-1", "localhost/p/a:1")
    store.refresh("localhost/p/b:cpb-2")
    store.import_tar(tmp_path / "x.tar", "localhost/p/c:1", tmp_path / "log")
    snap = store.snapshot()
    assert snap.image_id("p/a:1") == "aaa"
    assert snap.label("p/b:cpb-2", "io.cpb.digest") == "d2"
    assert [c[1] for c in runner.calls].count("images") == 1


def test_refresh_of_a_missing_image_lists_afresh_next_time() -> None:
    runner = FakePodman()
    store = ImageStore(runner)
    store.snapshot()
    store.refresh("localhost/p/missing:1")
    store.snapshot()
    assert [c[1] for c in runner.calls].count("images") == 2


def test_refresh_before_any_listing_starts_nothing() -> None:
    runner = FakePodman()
    ImageStore(runner).refresh("localhost/p/b:cpb-2")
    assert runner.calls == []
