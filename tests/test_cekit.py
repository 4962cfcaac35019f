"""cekit's version and metadata folder, found without importing importlib.metadata."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import pytest

from cpb.adapters import cekit
from fakes import FakeRunner


@pytest.fixture(autouse=True)
def _fresh() -> Iterator[None]:
    """The answer is cached per process: these tests change sys.path under it."""
    cekit.cekit_dist_info.cache_clear()
    yield
    cekit.cekit_dist_info.cache_clear()


def test_the_installed_cekit_is_found_as_importlib_metadata_finds_it() -> None:
    assert cekit.cekit_dist_info() == str(metadata.distribution("cekit")._path)  # type: ignore[attr-defined]
    assert cekit.cekit_version(FakeRunner()) == metadata.version("cekit")  # no process


def test_the_first_sys_path_entry_with_cekit_wins(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    info = tmp_path / "CEKit-9.8.7.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: cekit\nVersion: 9.8.7\n\n"
                                   "Version: not this one\n")
    monkeypatch.setattr(sys, "path", [str(tmp_path / "missing"), str(tmp_path), *sys.path])
    assert cekit.cekit_dist_info() == str(info)
    assert cekit.cekit_version(FakeRunner()) == "9.8.7"


def test_no_installed_cekit_asks_the_command(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "path", [str(tmp_path)])
    monkeypatch.setattr(cekit, "_asked", {})
    runner = FakeRunner().on("cekit", "--version", returns="cekit version 4.2.1\n")
    assert cekit.cekit_dist_info() is None
    assert cekit.cekit_version(runner) == "4.2.1"
    assert runner.calls == [["cekit", "--version"]]
