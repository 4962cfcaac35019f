from __future__ import annotations

import json
import py_compile
from pathlib import Path

from click.testing import CliRunner

from cpb.cli.app import cli, main
from cpb.resources import templates_dir
from cpb.spec.model import load_spec
from cpb.spec.schema import SCHEMA, schema_json


def test_shipped_schema_is_the_generated_one() -> None:
    shipped = Path(__file__).parents[1] / "src/cpb/cpb.schema.json"
    assert shipped.read_text() == schema_json()
    assert json.loads(shipped.read_text()) == SCHEMA


def test_schema_command_prints_it() -> None:
    result = CliRunner().invoke(cli, ["schema"])
    assert result.exit_code == 0 and json.loads(result.output)["required"] == ["project", "images"]


def test_init_makes_a_valid_project(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["init", str(tmp_path / "My Farm")])
    assert result.exit_code == 0, result.output
    spec = load_spec(tmp_path / "My Farm" / "cpb.yaml")
    assert spec.project == "my-farm"
    assert "from cpb.dodo import *" in (tmp_path / "My Farm" / "dodo.py").read_text()
    assert {m.name for i in spec.images.values() for m in i.modules} == {"hello"}


def test_init_refuses_a_non_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "keep.txt").write_text("mine")
    assert main(["init", str(tmp_path / "x")]) == 2
    assert (tmp_path / "x" / "keep.txt").read_text() == "mine"


def test_missing_spec_is_a_clear_error(tmp_path: Path, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    assert main(["plan"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cpb: error: no cpb.yaml here or in any folder above")
    assert "Traceback" not in err


def test_unknown_image_on_the_command_line(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    CliRunner().invoke(cli, ["init", str(tmp_path / "p")])
    code = main(["-f", str(tmp_path / "p/cpb.yaml"), "build", "helo"])
    assert code == 2
    assert "no image 'helo' in cpb.yaml (did you mean 'hello'?)" in capsys.readouterr().err


def test_templates_are_found() -> None:
    assert (templates_dir() / "image.yaml.j2").is_file()


def test_init_leaves_exactly_the_files_it_lists(tmp_path: Path) -> None:
    # What Python leaves beside the template when anything imports or compiles
    # its dodo.py (an installed package has it too): init must not copy it.
    compiled = Path(py_compile.compile(str(templates_dir() / "init" / "dodo.py")))
    assert compiled.parent.name == "__pycache__" and compiled.exists()
    result = CliRunner().invoke(cli, ["init", str(tmp_path / "farm")])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == f"created {tmp_path / 'farm'}:" and lines[-1].startswith("edit ")
    listed = {line.strip() for line in lines[1:-1]}
    on_disk = {p.relative_to(tmp_path / "farm").as_posix()
               for p in (tmp_path / "farm").rglob("*") if not p.is_dir()}
    assert on_disk == listed
    assert listed == {".gitignore", "cpb.yaml", "dodo.py", "modules/hello/install.sh",
                      "modules/hello/module.yaml"}
    assert not list((tmp_path / "farm").rglob("__pycache__"))
