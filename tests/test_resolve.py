"""Input digests: stable, content-addressed, and changed only where they should be."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from cpb.errors import SpecError
from cpb.project import open_project
from fakes import FakeRunner
from helpers import build_file_tree

SPEC = """
project: p
images:
  base:
    rootfs: {tar: base.tar}
  mid:
    from: base
    modules: [m1]
  leaf:
    from: mid
    modules: [m2]
    artifacts: [{path: data/blob.bin, dest: /opt}]
    cekit: {args: [{name: A, value: '1'}]}
  other:
    from: base
    modules: [m2]
"""
FILES = {
    "cpb.yaml": SPEC, "base.tar": "tar bytes", "data/blob.bin": "blob",
    "modules/m1/module.yaml": "name: m1\nversion: \"1\"\n", "modules/m1/install.sh": "echo 1\n",
    "modules/m2/module.yaml": "name: m2\nversion: \"1\"\n", "modules/m2/install.sh": "echo 2\n",
}


def digests(root: Path) -> dict[str, str]:
    project = open_project(root / "cpb.yaml", runner=FakeRunner())
    return {name: build.digest for name, build in project.images.items()}


def test_digests_do_not_depend_on_where_the_project_is(tmp_path: Path) -> None:
    one = build_file_tree(tmp_path / "one", FILES)
    first = digests(one)
    two = tmp_path / "elsewhere" / "two"
    shutil.copytree(one, two)
    assert digests(two) == first
    assert len(set(first.values())) == 4


def test_module_change_changes_that_image_and_its_descendants(tmp_path: Path) -> None:
    root = build_file_tree(tmp_path, FILES)
    before = digests(root)
    (root / "modules/m1/install.sh").write_text("echo changed\n")
    after = digests(root)
    assert {n for n in before if before[n] != after[n]} == {"mid", "leaf"}


def test_shared_module_change_reaches_every_user(tmp_path: Path) -> None:
    root = build_file_tree(tmp_path, FILES)
    before = digests(root)
    (root / "modules/m2/new-file.txt").write_text("added\n")
    after = digests(root)
    assert {n for n in before if before[n] != after[n]} == {"leaf", "other"}


def test_base_tarball_change_changes_everything(tmp_path: Path) -> None:
    root = build_file_tree(tmp_path, FILES)
    before = digests(root)
    (root / "base.tar").write_text("other bytes")
    after = digests(root)
    assert all(before[n] != after[n] for n in before)


def test_artifact_content_and_spec_fields_count(tmp_path: Path) -> None:
    root = build_file_tree(tmp_path, FILES)
    before = digests(root)
    (root / "data/blob.bin").write_text("new blob")
    assert {n for n, d in digests(root).items() if d != before[n]} == {"leaf"}
    before = digests(root)
    (root / "cpb.yaml").write_text(SPEC.replace("cekit: {args: [{name: A, value: '1'}]}",
                                                "cekit: {args: [{name: A, value: '2'}]}"))
    assert {n for n, d in digests(root).items() if d != before[n]} == {"leaf"}


def test_rendered_descriptor_is_what_cekit_needs(tmp_path: Path) -> None:
    root = build_file_tree(tmp_path, FILES)
    project = open_project(root / "cpb.yaml", runner=FakeRunner())
    leaf = project.images["leaf"]
    mid = project.images["mid"]
    descriptor = yaml.safe_load(leaf.descriptor)
    assert descriptor["name"] == "p/leaf"
    assert descriptor["from"] == mid.digest_ref == f"localhost/p/mid:cpb-{mid.digest[:12]}"
    labels = {entry["name"]: entry["value"] for entry in descriptor["labels"]}
    assert labels["io.cpb.digest"] == leaf.digest
    assert descriptor["modules"]["repositories"][0]["path"] == str(root / "modules/m2")
    assert descriptor["artifacts"][0]["path"] == str(root / "data/blob.bin")
    assert descriptor["args"] == [{"name": "A", "value": "1"}]  # the escape hatch, merged


def test_hostile_values_cannot_change_the_descriptor_structure(tmp_path: Path) -> None:
    hostile = "x' from: evil:1 # &a *b !!python/object:os.system [y]: {z}"
    spec = SPEC.replace("    modules: [m1]", "    modules: [m1]\n    env: {V: " +
                        yaml.safe_dump(hostile, default_style='"').strip() + "}")
    root = build_file_tree(tmp_path, {**FILES, "cpb.yaml": spec})
    project = open_project(root / "cpb.yaml", runner=FakeRunner())
    descriptor = yaml.safe_load(project.images["mid"].descriptor)
    assert descriptor["from"].startswith("localhost/p/base:cpb-")
    assert descriptor["envs"] == [{"name": "V", "value": hostile}]


def test_values_cekit_would_not_escape_are_refused(tmp_path: Path) -> None:
    spec = SPEC.replace("    modules: [m1]", '    modules: [m1]\n    env: {V: "a\\"\\nFROM evil"}')
    root = build_file_tree(tmp_path, {**FILES, "cpb.yaml": spec})
    with pytest.raises(SpecError, match="images.mid.env.V: .*unescaped"):
        open_project(root / "cpb.yaml", runner=FakeRunner())


def test_hash_cache_is_used_when_nothing_changed(tmp_path: Path) -> None:
    root = build_file_tree(tmp_path, FILES)
    project = open_project(root / "cpb.yaml", runner=FakeRunner())
    first = {name: build.digest for name, build in project.images.items()}
    assert not (root / ".cpb/hashes.json").exists()  # opening (and planning) writes nothing
    project.hashes.save()  # a build's record step
    assert (root / ".cpb/hashes.json").is_file()
    assert digests(root) == first
