"""The messages issue 20 found misleading, each asserted as the exact line a user sees."""

from __future__ import annotations

import hashlib
import sys
import sysconfig
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

from cpb.cli.app import main
from cpb.spec.schema import SCHEMA
from fakes import podman_fake
from helpers import build_file_tree


def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        spec: str, *argv: str, files: dict[str, str] | None = None) -> tuple[int, str, str]:
    """`cpb -f SPEC ARGV` in-process, podman answered by a fake with an empty storage."""
    build_file_tree(tmp_path, {"cpb.yaml": spec, **(files or {})})
    monkeypatch.setattr("cpb.cli.options.make_runner", lambda *lock: podman_fake())
    code = main(["-f", str(tmp_path / "cpb.yaml"), *argv])
    out, err = capsys.readouterr()
    return code, out, err


def patterns_without_words(schema: Any, path: str = "") -> list[str]:
    found = []
    if isinstance(schema, dict):
        if "pattern" in schema and "x-message" not in schema:
            found.append(f"{path}: {schema['pattern']}")
        for key, value in schema.items():
            found += patterns_without_words(value, f"{path}/{key}")
    elif isinstance(schema, list):
        for index, value in enumerate(schema):
            found += patterns_without_words(value, f"{path}[{index}]")
    return found


def test_no_pattern_of_the_schema_is_shown_as_a_regular_expression() -> None:
    assert patterns_without_words(SCHEMA) == []


POD_SPEC = """\
project: p
images:
  web: {from: "x:1"}
pods:
  farm:
    containers:
      - {image: web, workdir: srv}
"""


def test_a_relative_workdir_is_told_to_be_absolute(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    code, _, err = run(tmp_path, monkeypatch, capsys, POD_SPEC, "plan")
    assert (code, err) == (2, "cpb: error: cpb.yaml:7:31: pods.farm.containers[0].workdir: 'srv' "
                              "must be an absolute path (starting with '/', without '..', "
                              "quotes, backslashes or control characters)\n")


@pytest.mark.parametrize(("argv", "moved"), [
    (["plan", "--offline"], "cpb --offline plan"),
    (["build", "web", "--cache-dir", "/tmp/c", "-j", "2"], "cpb --cache-dir /tmp/c build web -j 2"),
    (["plan", "--cache-dir=/tmp/c"], "cpb --cache-dir=/tmp/c plan"),
])
def test_a_global_option_after_the_command_says_where_it_goes(
        argv: list[str], moved: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    option = next(a for a in argv if a.startswith("--")).split("=")[0]
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"Error: No such option '{option}'. {option} is an option of cpb itself: it goes "
        f"before the command, `{moved}`")


@pytest.mark.parametrize(("containers", "column", "hint"), [
    ("[{image: web, name: a}, {image: web, name: a}]", 41, "change one of their names"),
    ("[{image: web}, {image: other, name: web}]", 32,
     "give pods.farm.containers[0] a 'name' (its default is its image's name)"),
    ("[{image: web, name: web}, {image: web}]", 43,
     "give pods.farm.containers[1] a 'name' (its default is its image's name)"),
    ("[{image: web}, {image: web}]", 32,
     "give one of them a 'name' (the default is the image's name)"),
])
def test_two_containers_of_one_name_are_told_apart_by_what_they_have(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        containers: str, column: int, hint: str) -> None:
    spec = ("project: p\nimages:\n  web: {from: 'x:1'}\n  other: {from: 'x:1'}\npods:\n"
            f"  farm:\n    containers: {containers}\n")
    code, _, err = run(tmp_path, monkeypatch, capsys, spec, "plan")
    name = "a" if "name: a" in containers else "web"
    assert (code, err) == (2, f"cpb: error: cpb.yaml:7:{column}: "
                              f"pods.farm.containers[1]: container name '{name}' is already "
                              f"used by pods.farm.containers[0]; {hint}\n")


def test_a_pods_name_given_as_an_image_suggests_the_pod(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    spec = POD_SPEC.replace(", workdir: srv", "")
    code, _, err = run(tmp_path, monkeypatch, capsys, spec, "plan", "farm")
    assert (code, err) == (2, "cpb: error: no image 'farm' in cpb.yaml; 'farm' is a pod: "
                              "write pod:farm\n")


def test_a_path_artifacts_checksum_mismatch_names_its_place(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    wrong = "0" * 64
    spec = ("project: p\nimages:\n  web:\n    from: 'x:1'\n    artifacts:\n"
            f"      - {{path: files/a.txt, sha256: '{wrong}'}}\n")
    got = hashlib.sha256(b"a\n").hexdigest()
    code, _, err = run(tmp_path, monkeypatch, capsys, spec, "plan",
                       files={"files/a.txt": "a\n"})
    assert (code, err) == (2, "cpb: error: cpb.yaml:6:16: images.web.artifacts[0].path: "
                              f"artifact a.txt (files/a.txt): sha256 mismatch: expected {wrong}, "
                              f"got {got}\n")


def test_a_failed_task_is_named_once(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    spec = "project: p\nimages:\n  c: {from: 'x:1'}\n"
    code, out, _ = run(tmp_path, monkeypatch, capsys, spec, "build")
    assert code == 1
    assert "  FAIL build:c: base image x:1 is not in local storage; pull or import " \
           "it first (no registry is reached during a build)\n" in out


def test_doctor_does_not_call_a_cekit_off_path_ok(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no cpb.yaml: the machine checks only
    monkeypatch.setenv("PATH", str(tmp_path))  # neither podman nor cekit on it
    monkeypatch.setattr("cpb.cli.options.make_runner", lambda *lock: podman_fake())
    assert main(["doctor"]) == 3
    lines = capsys.readouterr().out.splitlines()
    assert lines[1] == (f"!!  cekit: not found on PATH, though cekit {metadata.version('cekit')} "
                        f"is installed for {sys.executable}: add {sysconfig.get_path('scripts')} "
                        "to PATH")
    assert not any(line.startswith("ok  cekit") for line in lines), lines


def test_a_module_folder_named_unlike_its_module_is_refused_by_plan(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    spec = "project: p\nimages:\n  a:\n    from: 'x:1'\n    modules: [misnamed]\n"
    code, _, err = run(tmp_path, monkeypatch, capsys, spec, "plan", files={
        "modules/misnamed/module.yaml": "schema_version: 1\nname: other\nversion: '1.0'\n"})
    assert (code, err) == (2, "cpb: error: modules/misnamed/module.yaml:2:7: name: the module "
                              "is named 'other' but its folder is 'misnamed'; cekit finds "
                              "modules by name, so they must be the same\n")
