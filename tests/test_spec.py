from __future__ import annotations

from pathlib import Path

import pytest

from cpb.errors import GraphError, SpecError
from cpb.spec.model import load_spec
from helpers import build_file_tree

GOOD = """
project: farm
defaults:
  packages_manager: apt-get
  packages: [ca-certificates]
  env: {LANG: C.UTF-8}
  modules: [common]
images:
  base:
    rootfs: {tar: base.tar}
  worker:
    from: base
    version: "2.1"
    modules: [worker]
    packages: [gcc, make]
    env: {WORKER_SUBJECT: tasks.gcc, RETRIES: 3, DEBUG: false}
    ports: [4222]
    artifacts:
      - {path: files/tool.tar.gz, dest: /opt}
    cmd: [run-worker, --verbose]
    cekit: {args: [{name: A, value: '1'}]}
"""


def project(tmp_path: Path, spec: str = GOOD, extra: dict[str, str] | None = None) -> Path:
    files = {
        "cpb.yaml": spec,
        "base.tar": "not really a tar",
        "files/tool.tar.gz": "payload",
        "modules/common/module.yaml": "name: common\nversion: \"1\"\n",
        "modules/worker/module.yaml": "name: worker\nversion: \"1\"\n",
        "modules/worker/install.sh": "echo hi\n",
        **(extra or {}),
    }
    build_file_tree(tmp_path, files)
    return tmp_path / "cpb.yaml"


def error_of(tmp_path: Path, spec: str, extra: dict[str, str] | None = None) -> SpecError:
    with pytest.raises(SpecError) as info:
        load_spec(project(tmp_path, spec, extra))
    return info.value


def test_good_spec_is_normalised(tmp_path: Path) -> None:
    spec = load_spec(project(tmp_path))
    assert spec.project == "farm"
    assert list(spec.images) == ["base", "worker"]
    worker = spec.images["worker"]
    assert worker.parent == "base" and worker.base_ref is None
    assert [m.name for m in worker.modules] == ["common", "worker"]  # defaults first
    assert worker.modules[1].label == "modules/worker"
    assert worker.packages == ("ca-certificates", "gcc", "make")
    assert dict(worker.env) == {"LANG": "C.UTF-8", "WORKER_SUBJECT": "tasks.gcc",
                                "RETRIES": "3", "DEBUG": "false"}
    assert worker.version == "2.1"
    assert worker.artifacts[0].name == "tool.tar.gz" and worker.artifacts[0].dest == "/opt"
    assert worker.cmd == ("run-worker", "--verbose")
    assert spec.images["base"].rootfs is not None
    assert spec.images["base"].rootfs.tar == tmp_path / "base.tar"


def test_misspelt_key_names_line_column_and_suggestion(tmp_path: Path) -> None:
    err = error_of(tmp_path, GOOD.replace("    packages: [gcc, make]", "    packges: [gcc, make]"))
    assert str(err) == ("cpb.yaml:14:5: images.worker.packges: unknown key 'packges' "
                        "(did you mean 'packages'?)")


def test_wrong_type(tmp_path: Path) -> None:
    err = error_of(tmp_path, GOOD.replace("ports: [4222]", "ports: four"))
    assert str(err) == "cpb.yaml:16:12: images.worker.ports: expected a list, got a string"


def test_unquoted_version_gets_a_hint(tmp_path: Path) -> None:
    err = error_of(tmp_path, GOOD.replace('version: "2.1"', "version: 2.1"))
    assert "images.worker.version: expected a string, got a number; quote it" in str(err)


def test_duplicate_key_is_refused(tmp_path: Path) -> None:
    err = error_of(tmp_path, GOOD.replace("  worker:\n", "  base:\n    from: x:1\n  worker:\n", 1)
                   .replace("images:\n  base:\n    rootfs", "images:\n  base:\n    rootfs"))
    assert "duplicate key 'base' (first at line 8)" in str(err)
    assert str(err).startswith("cpb.yaml:")


def test_missing_parent_suggests_the_close_name(tmp_path: Path) -> None:
    err = error_of(tmp_path, GOOD.replace("from: base", "from: bse"))
    assert isinstance(err, GraphError)
    assert str(err).startswith("cpb.yaml:11:11: images.worker.from: 'bse' is not an image "
                               "of this spec (did you mean 'base'?)")


def test_external_reference_is_allowed(tmp_path: Path) -> None:
    spec = load_spec(project(tmp_path, GOOD.replace("from: base", "from: debian:bookworm")))
    assert spec.images["worker"].base_ref == "debian:bookworm"
    assert spec.images["worker"].parent is None


@pytest.mark.parametrize("images, cycle", [
    ("  a: {from: a}\n", "a -> a"),
    ("  a: {from: b}\n  b: {from: c}\n  c: {from: a}\n", "a -> b -> c -> a"),
])
def test_cycles_are_named(tmp_path: Path, images: str, cycle: str) -> None:
    err = error_of(tmp_path, "project: p\nimages:\n" + images)
    assert isinstance(err, GraphError)
    assert str(err).endswith(f"images built from each other form a cycle: {cycle}")
    assert str(err).startswith("cpb.yaml:3:")


@pytest.mark.parametrize("name", ["Web", "a;rm -rf", "../x", "-x", "a b"])
def test_unsafe_image_names(tmp_path: Path, name: str) -> None:
    err = error_of(tmp_path, f'project: p\nimages:\n  "{name}": {{rootfs: {{tar: base.tar}}}}\n')
    assert "is not a valid name" in str(err)


def test_unsafe_module_name(tmp_path: Path) -> None:
    err = error_of(tmp_path, GOOD.replace("modules: [worker]", 'modules: ["../etc"]'))
    assert "images.worker.modules[0]: '../etc' is not a valid module name (" in str(err)


def test_missing_module_suggests(tmp_path: Path) -> None:
    err = error_of(tmp_path, GOOD.replace("modules: [worker]", "modules: [wrker]"))
    assert "module 'wrker' not found" in str(err) and "(did you mean 'worker'?)" in str(err)


def test_builtin_module_is_found_after_project_modules(tmp_path: Path) -> None:
    spec = load_spec(project(tmp_path, GOOD.replace("modules: [worker]", "modules: [apt-clean]")))
    assert spec.images["worker"].modules[-1].label == "builtin:apt-clean"


def test_missing_artifact_file(tmp_path: Path) -> None:
    err = error_of(tmp_path, GOOD.replace("files/tool.tar.gz", "files/nope.tgz"))
    assert "images.worker.artifacts[0].path: file not found: files/nope.tgz" in str(err)


@pytest.mark.parametrize("dest", ["tmp/x", "/opt/../etc"])
def test_artifact_destination_must_be_absolute_without_dotdot(tmp_path: Path, dest: str) -> None:
    err = error_of(tmp_path, GOOD.replace("dest: /opt", f"dest: {dest}"))
    assert "images.worker.artifacts[0].dest" in str(err)


def test_cekit_escape_hatch_cannot_rename(tmp_path: Path) -> None:
    err = error_of(tmp_path, GOOD.replace("cekit: {args: [{name: A, value: '1'}]}",
                                          "cekit: {name: evil}"))
    assert str(err).endswith("images.worker.cekit.name: 'name' is set by cpb and cannot be "
                             "overridden here")


def test_from_and_rootfs_are_exclusive(tmp_path: Path) -> None:
    err = error_of(tmp_path, "project: p\nimages:\n  a: {version: '1'}\n")
    assert "give exactly one of 'from' or 'rootfs' (neither given)" in str(err)


def test_empty_file(tmp_path: Path) -> None:
    err = error_of(tmp_path, "")
    assert str(err) == "cpb.yaml: file is empty; it needs at least 'project' and 'images'"


def test_yaml_syntax_error_has_position(tmp_path: Path) -> None:
    err = error_of(tmp_path, "project: p\nimages: [\n")
    assert str(err).startswith("cpb.yaml:3:1: ")


def test_tab_indentation(tmp_path: Path) -> None:
    err = error_of(tmp_path, "project: p\nimages:\n\tbase: {}\n")
    assert str(err).startswith("cpb.yaml:3:1: ") and "tab" in str(err)


def test_alias_bomb_is_refused_quickly(tmp_path: Path) -> None:
    lines = ['a0: &a0 ["x","x","x","x","x","x","x","x","x"]']
    for i in range(1, 10):
        lines.append(f"a{i}: &a{i} [" + ",".join([f"*a{i-1}"] * 9) + "]")
    err = error_of(tmp_path, "\n".join(lines) + "\n")
    assert "YAML bomb" in str(err)


def test_non_utf8(tmp_path: Path) -> None:
    path = project(tmp_path)
    path.write_bytes(b"project: \xff\xfe\n")
    with pytest.raises(SpecError, match="not UTF-8"):
        load_spec(path)
