"""docs/ci.md: its CI files are valid YAML and every cpb command in them exists."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest
import yaml

from cpb.cli.app import cli

DOC = Path(__file__).resolve().parents[1] / "docs" / "ci.md"
FENCE = re.compile(r"```(\w+)\n(.*?)```", re.S)
COMMAND = re.compile(r"\bcpb ((?:plan|build|push)\b[^\n&|;]*)")


def blocks(kind: str) -> list[str]:
    return [body for lang, body in FENCE.findall(DOC.read_text()) if lang == kind]


def test_ci_files_are_valid_yaml() -> None:
    docs = [yaml.safe_load(body) for body in blocks("yaml")]
    workflow = next(d for d in docs if "jobs" in d)
    steps = workflow["jobs"]["images"]["steps"]
    cache = next(s for s in steps if s.get("uses", "").startswith("actions/cache"))
    assert ".cpb" in cache["with"]["path"] and ".artifact-cache" in cache["with"]["path"]
    gitlab = next(d for d in docs if "images" in d and "script" in d["images"])
    assert ".cpb/state/" in gitlab["images"]["cache"]["paths"]


def commands() -> list[list[str]]:
    found = []
    for body in blocks("yaml") + blocks("sh") + blocks(""):
        for match in COMMAND.finditer(body):
            found.append(shlex.split(match.group(1).split("#")[0]))
    return found


def test_doc_has_the_commands_it_should() -> None:
    shown = {" ".join(c) for c in commands()}
    assert "build --push -j 2" in shown and "plan --push --exit-code" in shown


@pytest.mark.parametrize("argv", commands(), ids=lambda a: " ".join(a))
def test_every_cpb_command_in_the_doc_parses(argv: list[str]) -> None:
    command = cli.commands[argv[0]]
    with click.Context(cli) as parent:
        command.make_context(argv[0], argv[1:], parent=parent)
