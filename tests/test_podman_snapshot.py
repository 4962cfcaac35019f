"""ImageStore keeps its snapshot current after its own changes (issue 6).

Listing local storage is the one storage-wide call of a run; after a build,
tag or import the store patches its snapshot instead of listing again. The
listing by buildah has names only: the digest tag stands for the label until
an inspect has read the labels.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from cpb.adapters.podman import ImageStore
from cpb.errors import EnvironmentProblem
from fakes import FakeRunner

BUILDAH = json.dumps([{"id": "sha256:aaa", "names": ["localhost/p/a:cpb-1"]},
                      {"id": "sha256:ccc", "names": ["localhost/p/c:cpb-3"]}])
PODMAN = json.dumps([{"Id": "aaa", "Names": ["localhost/p/a:cpb-1"],
                      "Labels": {"io.cpb.digest": "d1"}}])
INSPECTED = json.dumps([{"Id": "bbb", "RepoTags": ["localhost/p/b:cpb-2"],
                         "Labels": {"io.cpb.digest": "d2"}}])


def FakePodman() -> FakeRunner:  # noqa: N802 (reads as the fake it is)
    """Storage holding a (labelled) and c (by buildah only); b is found by inspecting."""
    return (FakeRunner()
            .on("buildah", "images", returns=BUILDAH)
            .on("podman", "images", returns=PODMAN)
            .on("podman", "image", "inspect", "*missing:1", fails=(125, "image not known"))
            .on("podman", "image", "inspect", returns=INSPECTED)
            .on("podman", "tag")
            .on("podman", "import"))


def test_tag_and_refresh_patch_the_snapshot_without_listing_again(tmp_path: Path) -> None:
    runner = FakePodman()
    store = ImageStore(runner, lister="podman")
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
    store = ImageStore(runner, lister="podman")
    store.snapshot()
    store.refresh("localhost/p/missing:1")
    store.snapshot()
    assert [c[1] for c in runner.calls].count("images") == 2


def test_refresh_before_any_listing_lists_then_reads_the_labels() -> None:
    runner = FakePodman()
    store = ImageStore(runner, lister="buildah")
    store.refresh("localhost/p/b:cpb-2")
    assert [c[:2] for c in runner.calls] == [["buildah", "images"], ["podman", "image"]]
    assert store.snapshot().label("p/b:cpb-2", "io.cpb.digest") == "d2"


def test_a_buildah_listing_has_names_and_ids_but_no_labels() -> None:
    runner = FakePodman()
    snap = ImageStore(runner, lister="buildah").snapshot()
    assert runner.calls == [["buildah", "images", "--json", "--no-trunc"]]
    assert snap.image_id("p/a:cpb-1") == "aaa"  # podman's form of the id
    assert snap.label("p/a:cpb-1", "io.cpb.digest") is None


def test_holds_trusts_the_digest_tag_until_the_labels_are_read() -> None:
    runner = FakePodman()
    store = ImageStore(runner, lister="buildah")
    snap = store.snapshot()
    assert snap.holds("p/a:cpb-1", "io.cpb.digest", "d1")
    assert not snap.holds("p/missing:cpb-9", "io.cpb.digest", "d9")
    store.refresh("localhost/p/b:cpb-2")  # inspected: its label is known now
    assert snap.holds("p/b:cpb-2", "io.cpb.digest", "d2")
    assert not snap.holds("p/b:cpb-2", "io.cpb.digest", "something else")


def test_labels_of_inspects_only_what_was_not_read() -> None:
    runner = FakePodman()
    store = ImageStore(runner, lister="podman")
    assert store.labels_of(["aaa", "bbb"]) == {"aaa": {"io.cpb.digest": "d1"},
                                               "bbb": {"io.cpb.digest": "d2"}}
    assert [c for c in runner.calls if c[1] == "image"] == [["podman", "image", "inspect", "bbb"]]


def test_an_image_whose_labels_cannot_be_read_is_not_trusted_by_its_tag() -> None:
    runner = FakePodman()
    store = ImageStore(runner, lister="buildah")
    snap = store.snapshot()
    assert snap.holds("p/c:cpb-3", "io.cpb.digest", "d3")  # listed, labels not read yet

    runner.rules.clear()  # from now on every inspect fails
    runner.on("podman", "image", "inspect", fails=(125, "image not known"))
    assert store.labels_of(["ccc"]) == {"ccc": {}}
    assert not snap.holds("p/c:cpb-3", "io.cpb.digest", "d3")


def test_a_listing_started_in_the_background_runs_while_the_caller_works() -> None:
    started, release = threading.Event(), threading.Event()

    def slow_listing(argv: list[str]) -> str:
        started.set()
        assert release.wait(10)
        return BUILDAH

    runner = FakeRunner().on("buildah", "images", does=slow_listing)
    store = ImageStore(runner, lister="buildah")
    store.list_in_background()
    assert started.wait(10)  # listing, and this thread not waiting for it
    release.set()
    assert store.snapshot().image_id("p/a:cpb-1") == "aaa"
    assert store.snapshot().image_id("p/c:cpb-3") == "ccc"
    assert runner.started == {"buildah": 1}


def test_a_background_listing_that_failed_is_made_again_where_its_error_is_told() -> None:
    runner = FakeRunner().on("buildah", "images", fails=(125, "permission denied"))
    store = ImageStore(runner, lister="buildah")
    store.list_in_background()
    for _ in range(100):  # until the thread has tried
        if runner.started["buildah"]:
            break
        time.sleep(0.05)
    with pytest.raises(EnvironmentProblem, match="permission denied"):
        store.snapshot()
    assert runner.started == {"buildah": 2}


def test_a_background_listing_after_the_callers_own_lists_nothing() -> None:
    runner = FakeRunner().on("buildah", "images", returns=BUILDAH)
    store = ImageStore(runner, lister="buildah")
    store.snapshot()
    store.invalidate()  # a change since: the next snapshot() lists, not a late thread
    store.list_in_background()
    time.sleep(0.2)
    assert runner.started == {"buildah": 1}
