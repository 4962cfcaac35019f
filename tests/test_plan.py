"""Plan reasons, computed against a fake view of local storage (pure logic)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cpb.project import open_project
from cpb.tasks.images import do_render
from cpb.tasks.plan import make_plan
from cpb.tasks.records import record_found, repair_records
from fakes import FakeRunner, podman_fake
from helpers import build_file_tree

FILES = {
    "cpb.yaml": """
        project: p
        images:
          base: {rootfs: {tar: base.tar}}
          mid: {from: base, modules: [m1]}
          leaf: {from: mid}
        """,
    "base.tar": "x",
    "modules/m1/module.yaml": "name: m1\nversion: \"1\"\n",
    "modules/m1/install.sh": "echo 1\n",
}


def pretend_built(root: Path) -> FakeRunner:
    """Render and record every image as built, and a storage that holds them."""
    runner = podman_fake()
    project = open_project(root / "cpb.yaml", runner=runner)
    for name, build in project.images.items():
        runner.storage.add_image(f"id-{name}", [build.digest_ref, build.version_ref],
                         {"io.cpb.digest": build.digest})
        do_render(project, name)
        project.state.write_stamp(f"build:{name}", {"digest": build.digest,
                                                    "components": build.components})
    return runner


def files_of(root: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def record(root: Path, runner: FakeRunner) -> None:
    """What every build does before it plans: record the images found built."""
    record_found(open_project(root / "cpb.yaml", runner=runner))


def pending(root: Path, runner: FakeRunner) -> dict[str, list[str]]:
    project = open_project(root / "cpb.yaml", runner=runner)
    return {p.task: p.reasons for p in make_plan(project) if p.pending}


def test_fresh_project_plans_everything(tmp_path: Path) -> None:
    root = build_file_tree(tmp_path, FILES)
    plan = pending(root, podman_fake())
    assert len(plan) == 10
    assert plan["build:mid"] == ["never built in this project (no record in .cpb/)"]
    assert plan["tag:mid"] == ["image mid will be built"]


def test_nothing_pending_after_a_build(tmp_path: Path) -> None:
    root = build_file_tree(tmp_path, FILES)
    runner = pretend_built(root)
    before = files_of(root)
    assert pending(root, runner) == {}
    # One listing, and one inspect of the images whose records lack their id:
    assert dict(runner.started) == {"buildah": 1, "podman": 1}
    assert files_of(root) == before  # planning writes nothing
    record(root, runner)
    assert files_of(root) != before
    runner.started.clear()
    assert pending(root, runner) == {}
    assert dict(runner.started) == {"buildah": 1}  # recorded now: the listing alone


def test_module_change_names_the_file_and_propagates(tmp_path: Path) -> None:
    root = build_file_tree(tmp_path, FILES)
    runner = pretend_built(root)
    (root / "modules/m1/install.sh").write_text("echo 2\n")
    plan = pending(root, runner)
    assert plan["build:mid"] == ["module file modules/m1/install.sh changed"]
    assert plan["build:leaf"] == ["parent image mid will be rebuilt"]
    assert "build:base" not in plan


def test_spec_field_change_is_named(tmp_path: Path) -> None:
    root = build_file_tree(tmp_path, FILES)
    runner = pretend_built(root)
    spec = root / "cpb.yaml"
    spec.write_text(spec.read_text().replace("leaf: {from: mid}",
                                             "leaf: {from: mid, env: {A: b}}"))
    assert pending(root, runner)["build:leaf"] == ["spec field images.leaf.env changed"]


def test_change_in_a_module_another_module_installs_names_the_file(tmp_path: Path) -> None:
    files = {**FILES,
             "modules/m1/module.yaml": ('name: m1\nversion: "1"\n'
                                        "modules:\n  install: [{name: m0}]\n"),
             "modules/m0/module.yaml": 'name: m0\nversion: "1"\n',
             "modules/m0/install.sh": "echo 0\n"}
    root = build_file_tree(tmp_path, files)
    runner = pretend_built(root)
    assert pending(root, runner) == {}
    (root / "modules/m0/install.sh").write_text("echo changed\n")
    plan = pending(root, runner)
    assert plan["build:mid"] == ["module file modules/m0/install.sh changed"]
    assert plan["build:leaf"] == ["parent image mid will be rebuilt"]


def test_package_change_rerenders_the_generated_module(tmp_path: Path) -> None:
    files = {**FILES, "cpb.yaml": FILES["cpb.yaml"].replace(
        "leaf: {from: mid}", "leaf: {from: mid, packages: [gcc]}")}
    root = build_file_tree(tmp_path, files)
    runner = pretend_built(root)
    assert (root / ".cpb/render/leaf/modules/packages/module.yaml").is_file()
    assert pending(root, runner) == {}
    spec = root / "cpb.yaml"
    spec.write_text(spec.read_text().replace("packages: [gcc]", "packages: [gcc, make]"))
    plan = pending(root, runner)
    assert plan["render:leaf"] == ["rendered descriptor is out of date"]
    assert plan["build:leaf"] == ["spec field images.leaf.packages changed"]
    spec.write_text(spec.read_text().replace(", packages: [gcc, make]", ""))
    project = open_project(spec, runner=runner)
    do_render(project, "leaf")
    # no module of the earlier spec is left where cekit looks for modules
    assert not (root / ".cpb/render/leaf/modules/packages/module.yaml").exists()


def test_missing_image_is_the_reason(tmp_path: Path) -> None:
    root = build_file_tree(tmp_path, FILES)
    runner = pretend_built(root)
    runner.storage.images = [i for i in runner.storage.images if i["Id"] != "id-leaf"]
    plan = pending(root, runner)
    assert list(plan) == ["build:leaf", "tag:leaf"]
    assert plan["build:leaf"][0].startswith("image missing from local storage")


def test_foreign_image_with_our_tag_but_another_digest_is_not_trusted(tmp_path: Path) -> None:
    root = build_file_tree(tmp_path, FILES)
    runner = pretend_built(root)
    for image in runner.storage.images:
        if image["Id"] == "id-leaf":
            image["Labels"] = {"io.cpb.digest": "0" * 64}
    assert "build:leaf" in pending(root, runner)
    record(root, runner)
    assert "build:leaf" in pending(root, runner)  # and it was not recorded as built


def test_an_image_that_replaced_the_recorded_one_is_checked(tmp_path: Path) -> None:
    root = build_file_tree(tmp_path, FILES)
    runner = pretend_built(root)
    record(root, runner)  # records now name each image id
    for image in runner.storage.images:
        if image["Id"] == "id-leaf":  # retagged by hand: another image, another label
            image["Id"], image["Labels"] = "id-other", {"io.cpb.digest": "0" * 64}
    runner.calls.clear()
    assert "build:leaf" in pending(root, runner)
    assert runner.calls[1] == ["podman", "image", "inspect", "id-other"]


def test_damaged_records_are_rewritten_from_storage_or_removed(tmp_path: Path) -> None:
    root = build_file_tree(tmp_path, FILES)
    runner = pretend_built(root)
    project = open_project(root / "cpb.yaml", runner=runner)
    mid = project.state.stamp_path("build:mid")
    mid.write_text(mid.read_text()[:20])  # truncated
    stray = project.state.stamp_path("render:leaf")
    stray.parent.mkdir(parents=True, exist_ok=True)
    stray.write_text("[1, 2")
    repair_records(project)
    assert project.state.read_stamp("build:mid") == {
        "digest": project.images["mid"].digest,
        "components": project.images["mid"].components, "image_id": "id-mid"}
    assert not stray.exists()


def test_a_shipped_module_beside_the_generated_ones_is_removed_not_loaded(tmp_path: Path) -> None:
    files = {**FILES, "cpb.yaml": FILES["cpb.yaml"].replace(
        "leaf: {from: mid}", "leaf: {from: mid, packages: [gcc]}")}
    root = build_file_tree(tmp_path, files)
    runner = pretend_built(root)
    generated = root / ".cpb/render/leaf/modules"
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "module.yaml").write_text("name: m1\nversion: '99'\n")
    # a project can ship its .cpb/: a module cekit would load, and a link out of the project
    (generated / "evil").mkdir()
    (generated / "evil/module.yaml").write_text("name: m1\nversion: '99'\n")
    (generated / "link").symlink_to(victim)
    plan = pending(root, runner)
    assert plan["render:leaf"] == ["rendered descriptor is out of date"]
    do_render(open_project(root / "cpb.yaml", runner=runner), "leaf")
    assert sorted(p.name for p in generated.iterdir()) == ["packages"]
    assert (victim / "module.yaml").is_file()  # the link was removed, not followed
    assert "render:leaf" not in pending(root, runner)


@pytest.mark.parametrize("rel", ["image.yaml", "modules/packages/module.yaml"])
def test_a_rendered_file_edited_by_hand_is_rendered_again(tmp_path: Path, rel: str) -> None:
    # Same size, its mtime set back: only its content says it is not what cpb wrote.
    files = {**FILES, "cpb.yaml": FILES["cpb.yaml"].replace(
        "leaf: {from: mid}", "leaf: {from: mid, packages: [gcc]}")}
    root = build_file_tree(tmp_path, files)
    runner = pretend_built(root)
    rendered = root / ".cpb/render/leaf" / rel
    text, before = rendered.read_bytes(), rendered.stat()
    rendered.write_bytes(text.replace(b"name", b"nbme", 1))
    os.utime(rendered, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = rendered.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    assert pending(root, runner) == {"render:leaf": ["rendered descriptor is out of date"]}
    do_render(open_project(root / "cpb.yaml", runner=runner), "leaf")
    assert rendered.read_bytes() == text
    assert pending(root, runner) == {}
