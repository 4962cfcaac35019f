"""The documentation is tested: README.md and docs/*.md against the real loader and CLI.

Conventions for the pages:
- a ```yaml block whose top level has `project:` is a whole cpb.yaml: it is
  loaded and validated with cpb's real loader (modules it names are stubbed,
  files it names are created empty, so only the spec itself is checked);
- a block meant as a fragment, or not a cpb.yaml at all, needs nothing;
- every `cpb …` line in a ```sh block is parsed by the real CLI (click's
  parser, nothing runs).
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest
import yaml

from cpb.cli.app import cli
from cpb.errors import SpecError
from cpb.spec.model import load_spec

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)


def blocks(kind: str) -> list[tuple[str, int, str]]:
    found = []
    for page in PAGES:
        text = page.read_text()
        for match in FENCE.finditer(text):
            if match.group(1) == kind:
                line = text[:match.start()].count("\n") + 2
                found.append((page.relative_to(REPO).as_posix(), line, match.group(2)))
    return found


def specs() -> list[tuple[str, int, str]]:
    out = []
    for page, line, body in blocks("yaml"):
        try:
            data = yaml.safe_load(body)
        except yaml.YAMLError:
            continue
        if isinstance(data, dict) and "project" in data and "images" in data:
            out.append((page, line, body))
    return out


def command_lines() -> list[tuple[str, int, list[str]]]:
    out = []
    for page, line, body in blocks("sh"):
        for offset, text in enumerate(body.splitlines()):
            code = text.split(" #", 1)[0].strip()
            for part in re.split(r"&&|\|\||;|\||>", code):
                words = part.strip()
                if not words.startswith("cpb "):
                    continue
                try:
                    argv = shlex.split(words)[1:]
                except ValueError:
                    continue
                if any(w in ("/", "...", "…") or w.startswith(("[", "<")) for w in argv):
                    continue  # a sketch of several commands or optional parts
                out.append((page, line + offset, argv))
    return out


def test_the_pages_have_specs_and_commands() -> None:
    assert specs() and len(command_lines()) >= 20


@pytest.mark.parametrize(("page", "line", "body"), specs(),
                         ids=lambda v: v if isinstance(v, str) and len(v) < 40 else None)
def test_every_cpb_yaml_in_the_docs_loads(page: str, line: int, body: str,
                                           tmp_path: Path) -> None:
    spec_file = tmp_path / "cpb.yaml"
    spec_file.write_text(body)
    data = yaml.safe_load(body)
    for image in (data.get("images") or {}).values():
        for name in (image or {}).get("modules") or []:
            mod = tmp_path / "modules" / str(name)
            mod.mkdir(parents=True, exist_ok=True)
            (mod / "module.yaml").write_text(
                f"schema_version: 1\nname: {name}\nversion: '1.0'\n")
        for artifact in (image or {}).get("artifacts") or []:
            if isinstance(artifact, dict) and "path" in artifact:
                target = tmp_path / artifact["path"]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(b"")
        tar = ((image or {}).get("rootfs") or {}).get("tar")
        if isinstance(tar, str):
            (tmp_path / tar).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / tar).write_bytes(b"")
    try:
        load_spec(spec_file)
    except SpecError as exc:
        pytest.fail(f"{page}:{line}: {exc}")


@pytest.mark.parametrize(("page", "line", "argv"), command_lines(),
                         ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_every_cpb_command_in_the_docs_parses(page: str, line: int, argv: list[str]) -> None:
    try:
        with cli.make_context("cpb", list(argv), resilient_parsing=False) as ctx:
            rest = [*getattr(ctx, "_protected_args", []), *ctx.args]
            if rest:
                name, command, args = cli.resolve_command(ctx, rest)
                assert command is not None, name
                command.make_context(name or "", args, parent=ctx).close()
    except click.exceptions.Exit:
        pass  # --help, --version
    except click.UsageError as exc:
        pytest.fail(f"{page}:{line}: cpb {shlex.join(argv)}: {exc.format_message()}")


def test_no_page_installs_the_unrelated_pypi_cpb() -> None:
    """`cpb` on PyPI is another project; ours is the distribution computepods-builder."""
    assert 'name = "computepods-builder"' in (REPO / "pyproject.toml").read_text()
    for page in PAGES:
        assert not re.search(r"(?<!`)pip install (-\S+ )*cpb\b(?![-`])", page.read_text()), page
