"""The render memo: a full run renders only the images whose template values changed."""

from __future__ import annotations

import json
import logging
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from cpb.project import Project, open_project
from cpb.resolve.rendermemo import memo_file
from fakes import FakeRunner
from helpers import build_file_tree

SPEC = """
project: p
images:
  base:
    rootfs: {tar: base.tar}
    packages: [gcc]
  mid:
    from: base
    modules: [m1]
    description: the middle one
  leaf:
    from: mid
    artifacts: [{path: data/blob.bin, dest: /opt}]
"""
FILES = {
    "cpb.yaml": SPEC, "base.tar": "tar bytes", "data/blob.bin": "blob",
    "modules/m1/module.yaml": "name: m1\nversion: \"1\"\n", "modules/m1/install.sh": "echo 1\n",
}


def opened(root: Path) -> Project:
    return open_project(root / "cpb.yaml", runner=FakeRunner())


def outputs(project: Project) -> dict[str, tuple[str, str, dict[str, str]]]:
    return {name: (b.digest, b.descriptor, dict(b.generated)) for name, b in project.images.items()}


@pytest.fixture
def cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "cache-home"
    monkeypatch.setenv("XDG_CACHE_HOME", str(home))
    return home


def test_a_second_run_takes_every_text_from_the_memo_and_resolves_the_same(
        tmp_path: Path, cache_home: Path) -> None:
    root = build_file_tree(tmp_path / "project", FILES)
    first = opened(root)
    assert first.renders.dirty and len(first.renders.entries) == 3  # rendered, one per image
    first.renders.save()
    file = memo_file(root)
    assert file.is_relative_to(cache_home / "cpb" / "render")  # the user's cache, not the project
    assert stat.S_IMODE(file.stat().st_mode) == 0o600
    again = opened(root)
    assert not again.renders.dirty and again.renders.used == set(again.renders.entries)
    assert outputs(again) == outputs(first)
    saved = file.stat().st_mtime_ns
    again.renders.save()  # nothing new: not written again
    assert file.stat().st_mtime_ns == saved


def test_an_edit_is_rendered_again_and_the_rest_comes_from_the_memo(
        tmp_path: Path, cache_home: Path) -> None:
    root = build_file_tree(tmp_path / "project", FILES)
    before = opened(root)
    before.renders.save()
    (root / "cpb.yaml").write_text(SPEC.replace("the middle one", "the new middle"))
    after = opened(root)
    # `mid` again, and `leaf`, which is built from mid's new digest; `base` from the memo
    assert len(after.renders.entries) == 5 and len(after.renders.used) == 3
    assert "the new middle" in after.images["mid"].descriptor
    assert after.images["base"].descriptor == before.images["base"].descriptor
    assert after.images["mid"].digest_ref in after.images["leaf"].descriptor
    after.renders.save()
    assert len(opened(root).renders.entries) == 3  # the old renders are dropped


def test_a_new_artifact_checksum_is_a_new_render(tmp_path: Path, cache_home: Path) -> None:
    """The generated artifacts module carries the checksum: the memo key has it too."""
    root = build_file_tree(tmp_path / "project", FILES)
    before = opened(root)
    before.renders.save()
    (root / "data/blob.bin").write_text("another blob")
    after = opened(root)
    rel = "modules/artifacts/module.yaml"
    assert after.images["leaf"].generated[rel] != before.images["leaf"].generated[rel]
    assert after.renders.dirty


def saved(tmp_path: Path) -> tuple[Path, Project, Path, dict[str, Any]]:
    """A project opened once and its memo saved: (root, project, memo file, its JSON)."""
    root = build_file_tree(tmp_path / "project", FILES)
    first = opened(root)
    first.renders.save()
    file = memo_file(root)
    return root, first, file, json.loads(file.read_text())


def test_a_memo_of_another_jinja2_or_format_is_not_used(tmp_path: Path, cache_home: Path) -> None:
    root, first, file, data = saved(tmp_path)
    for key, value in (("engine", [1, 2, 3, 4]), ("format", 99)):
        file.write_text(json.dumps({**data, key: value}))
        again = opened(root)
        assert again.renders.dirty and outputs(again) == outputs(first)


@pytest.mark.parametrize("content", [
    "{not json", "[]", json.dumps({"format": 1, "entries": {"k": 1}}),
])
def test_a_damaged_memo_is_ignored_with_a_warning_at_most(
        tmp_path: Path, cache_home: Path, content: str) -> None:
    root = build_file_tree(tmp_path / "project", FILES)
    expected = outputs(opened(root))
    memo_file(root).parent.mkdir(parents=True, exist_ok=True)
    memo_file(root).write_text(content)
    assert outputs(opened(root)) == expected


def test_entries_of_the_wrong_shape_are_left_out(tmp_path: Path, cache_home: Path) -> None:
    root, first, file, data = saved(tmp_path)
    bad = {key: [text, {"modules/x/module.yaml": 5}] for key, (text, _) in data["entries"].items()}
    file.write_text(json.dumps({**data, "entries": bad}))
    again = opened(root)
    assert again.renders.used == set(again.renders.entries)  # every entry made afresh
    assert outputs(again) == outputs(first)


def test_a_memo_that_cannot_be_saved_leaves_a_warning_and_the_run_goes_on(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocked))
    root = build_file_tree(tmp_path / "project", FILES)
    project = opened(root)
    with caplog.at_level(logging.WARNING):
        project.renders.save()
    assert "render memo was not saved" in caplog.text
    assert not os.path.exists(memo_file(root))
