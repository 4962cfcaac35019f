"""The memo of validated YAML (spec/memo.py, resolve/memo.py): a cpb.yaml or
module.yaml validated by an earlier run is not parsed again while its file is
the same file, and nothing a memo holds can stand in for a file that changed."""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path

import pytest

from cpb.errors import SpecError
from cpb.project import open_project
from cpb.resolve import memo as resolve_memo
from cpb.resolve.memo import memo_path, open_memo, save_memo
from cpb.spec import model as spec_model
from cpb.spec import modules as spec_modules
from cpb.spec.memo import SpecMemo
from cpb.spec.model import load_spec
from cpb.tasks.plan import make_plan
from cpb.tasks.records import record_found
from fakes import podman_fake
from helpers import build_file_tree

SPEC = """
project: p
images:
  base:
    rootfs: {tar: base.tar}
    modules: [m1]
"""
FILES = {
    "cpb.yaml": SPEC, "base.tar": "tar bytes",
    "modules/m1/module.yaml": "name: m1\nversion: \"1\"\nexecute:\n  - script: install.sh\n",
    "modules/m1/install.sh": "echo 1\n",
    "modules/m2/module.yaml": "name: m2\nversion: \"1\"\n",
}
M1 = "modules/m1/module.yaml"


def trusting() -> SpecMemo:
    """A memo that takes entries for files of any age (the margin is tested on its own)."""
    return SpecMemo(now_ns=time.time_ns() + 10**12)


def no_parsing(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    parsed: list[str] = []

    def refuse(path: Path, display: str | None = None) -> object:
        parsed.append(str(display))
        raise AssertionError(f"{display} parsed")

    monkeypatch.setattr(spec_modules, "load_yaml", refuse)
    monkeypatch.setattr(spec_model, "load_yaml", refuse)
    return parsed


def test_a_validated_module_yaml_is_not_parsed_again(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    root = build_file_tree(tmp_path, FILES)
    memo = trusting()
    first = load_spec(root / "cpb.yaml", memo=memo)
    assert str(root / M1) in memo.entries and memo.dirty
    no_parsing(monkeypatch)
    again = load_spec(root / "cpb.yaml", memo=SpecMemo(memo.kept()))
    assert again.images["base"].modules == first.images["base"].modules
    assert again.images["base"].modules[0].files == first.images["base"].modules[0].files


def test_a_validated_cpb_yaml_is_not_parsed_again_and_its_errors_keep_their_place(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = build_file_tree(tmp_path, FILES)
    memo = trusting()
    first = load_spec(root / "cpb.yaml", memo=memo)
    assert str(root / "cpb.yaml") in memo.entries
    parsed = no_parsing(monkeypatch)
    assert load_spec(root / "cpb.yaml", memo=SpecMemo(memo.kept())) == first
    assert parsed == []
    (root / "modules/m1/module.yaml").rename(root / "modules/m1/moved.yaml")
    with pytest.raises(SpecError) as caught:  # cpb.yaml unchanged: known, not parsed
        load_spec(root / "cpb.yaml", memo=SpecMemo(memo.kept()))
    assert (caught.value.file, caught.value.line, caught.value.column) == ("cpb.yaml", 5, 14)
    assert "module 'm1' not found" in str(caught.value)


def test_a_changed_module_yaml_is_read_again(tmp_path: Path) -> None:
    root = build_file_tree(tmp_path, FILES)
    memo = trusting()
    load_spec(root / "cpb.yaml", memo=memo)
    (root / M1).write_text("name: m1\nversion: \"1\"\nmodules:\n  install: [{name: m2}]\n")
    spec = load_spec(root / "cpb.yaml", memo=SpecMemo(memo.kept()))
    assert [m.name for m in spec.images["base"].modules] == ["m1", "m2"]


def test_an_entry_for_another_file_identity_is_not_used(tmp_path: Path) -> None:
    """A committed .cpb/ cannot vouch for a module.yaml: its inode and ctime are the checkout's."""
    root = build_file_tree(tmp_path, FILES)
    st = (root / M1).stat()
    forged = [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino + 1]
    memo = SpecMemo({str(root / M1): [forged, {"name": "m1", "version": "1",
                                                 "modules": {"install": [{"name": "m2"}]}}]})
    spec = load_spec(root / "cpb.yaml", memo=memo)
    assert [m.name for m in spec.images["base"].modules] == ["m1"]


def test_a_failed_check_on_a_memo_hit_still_names_line_and_column(
        tmp_path: Path) -> None:
    root = build_file_tree(tmp_path, FILES)
    memo = trusting()
    load_spec(root / "cpb.yaml", memo=memo)
    (root / "modules/m1/install.sh").unlink()  # module.yaml itself is unchanged: a memo hit
    with pytest.raises(SpecError) as caught:
        load_spec(root / "cpb.yaml", memo=SpecMemo(memo.kept()))
    assert (caught.value.line, caught.value.column) == (4, 13)
    assert "script not found in the module: install.sh" in str(caught.value)


def test_a_file_changed_within_the_margin_is_not_memoised(tmp_path: Path) -> None:
    root = build_file_tree(tmp_path, FILES)
    memo = SpecMemo(now_ns=time.time_ns(), margin_ns=2_000_000_000)
    load_spec(root / "cpb.yaml", memo=memo)
    assert memo.entries == {} and not memo.dirty


def test_a_value_json_cannot_hold_is_not_memoised(tmp_path: Path) -> None:
    file = build_file_tree(tmp_path, FILES) / M1
    memo = trusting()
    memo.put(file, file.stat(), {"name": "m1", "built": dt.date(2026, 11, 30)})
    assert memo.entries == {} and not memo.dirty


def test_a_build_saves_the_memo_and_a_plan_does_not(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    root = build_file_tree(tmp_path, FILES)
    (root / ".cpb").mkdir()
    # the files were written just now: let the memo take them as if two seconds had passed
    monkeypatch.setattr(resolve_memo, "RACY_MARGIN_NS", -10**12)
    project = open_project(root / "cpb.yaml", runner=podman_fake())
    make_plan(project)
    assert not memo_path(root).exists()  # planning writes nothing
    record_found(project)  # a build's record step
    saved = json.loads(memo_path(root).read_text())
    assert str(root / M1) in saved["entries"]
    assert open_memo(root).get(root / M1, (root / M1).stat()) is not None


def test_a_memo_of_another_schema_or_unreadable_is_ignored(tmp_path: Path) -> None:
    root = build_file_tree(tmp_path, FILES)
    (root / ".cpb").mkdir()
    memo = trusting()
    load_spec(root / "cpb.yaml", memo=memo)
    save_memo(root, memo)
    assert open_memo(root).entries
    data = json.loads(memo_path(root).read_text())
    memo_path(root).write_text(json.dumps({**data, "schema": "0" * 64}))
    assert open_memo(root).entries == {}
    memo_path(root).write_text("{not json")
    assert open_memo(root).entries == {}


def test_a_save_drops_what_this_load_did_not_read(tmp_path: Path) -> None:
    root = build_file_tree(tmp_path, FILES)
    (root / ".cpb").mkdir()
    gone = str(root / "modules/old/module.yaml")
    memo = SpecMemo({gone: [[1, 2, 3, 4], {"name": "old"}]}, now_ns=time.time_ns() + 10**12)
    load_spec(root / "cpb.yaml", memo=memo)
    save_memo(root, memo)
    assert set(json.loads(memo_path(root).read_text())["entries"]) == {
        str(root / M1), str(root / "cpb.yaml")}
