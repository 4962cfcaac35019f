"""url artifacts in the spec, the graph, the digests and the plan (no network needed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cpb.adapters.artifacts import ArtifactCache
from cpb.errors import SpecError
from cpb.project import Project, open_project
from cpb.spec.model import load_spec
from cpb.tasks.fetch import fetch_uptodate
from cpb.tasks.plan import make_plan
from fakes import podman_fake
from helpers import build_file_tree

WHEEL = "https://files.example.org/packages/ab/cd/nats_py-2.16.0-py3-none-any.whl"
SUM_A = "a" * 64
SUM_B = "b" * 64
SPEC = f"""
project: p
defaults:
  artifacts:
    - url: {WHEEL}
      sha256: {SUM_A.upper()}
images:
  base:
    rootfs: {{tar: base.tar}}
  one:
    from: base
    artifacts:
      - url: https://example.org/dl/tool%2B1.tgz?x=1
        sha256: {SUM_B}
        dest: /opt/
  two:
    from: base
    artifacts:
      - {{path: data/local.bin}}
"""


def make(tmp_path: Path, spec: str = SPEC) -> Path:
    build_file_tree(tmp_path, {"cpb.yaml": spec, "base.tar": "tar", "data/local.bin": "local"})
    return tmp_path / "cpb.yaml"


def open_(spec_file: Path, cache: Path) -> Project:
    return open_project(spec_file, runner=podman_fake(), cache=ArtifactCache(cache))


def test_url_artifacts_are_read_with_defaults_names_and_lower_case(tmp_path: Path) -> None:
    spec = load_spec(make(tmp_path))
    one = spec.images["one"].artifacts
    assert [(a.name, a.url, a.key) for a in one] == [
        ("nats_py-2.16.0-py3-none-any.whl", WHEEL, SUM_A),
        ("tool+1.tgz", "https://example.org/dl/tool%2B1.tgz?x=1", SUM_B)]
    assert one[1].dest == "/opt/" and one[1].path is None
    two = spec.images["two"].artifacts
    assert [a.name for a in two] == ["nats_py-2.16.0-py3-none-any.whl", "local.bin"]
    assert two[1].url is None and two[1].path == tmp_path / "data/local.bin"


@pytest.mark.parametrize(("entry", "message"), [
    ("{url: 'https://h/x.whl'}",
     "cpb.yaml:5:17: images.a.artifacts[0]: a url artifact needs its checksum: add "
     "'sha256: ...' (`cpb artifact add URL` prints it)"),
    ("{url: 'https://h/x.whl', path: base.tar, sha256: " + SUM_A + "}",
     "cpb.yaml:5:17: images.a.artifacts[0]: give exactly one of 'path' or 'url' (both given)"),
    ("{name: x}",
     "cpb.yaml:5:17: images.a.artifacts[0]: give exactly one of 'path' or 'url' (neither given)"),
    ("{url: 'https://h/x.whl', sha256: abc}",
     "cpb.yaml:5:50: images.a.artifacts[0].sha256: 'abc' is not a sha256 checksum "
     "(64 hex digits)"),
    ("{url: 'ftp://h/x.whl', md5: " + "0" * 32 + "}",
     "cpb.yaml:5:23: images.a.artifacts[0].url: 'ftp://h/x.whl' is not an http://, https:// "
     "or file:// URL"),
    ("{url: 'https://h/', sha256: " + SUM_A + "}",
     "cpb.yaml:5:17: images.a.artifacts[0]: cannot take a file name from 'https://h/'; "
     "add 'name: ...'"),
    ("{url: 'https://h/x', sha265: " + SUM_A + "}",
     "cpb.yaml:5:38: images.a.artifacts[0].sha265: unknown key 'sha265' "
     "(did you mean 'sha256'?)"),
])
def test_bad_artifact_entries_are_one_precise_line(tmp_path: Path, entry: str,
                                                   message: str) -> None:
    spec = ("project: p\nimages:\n  a:\n    rootfs: {tar: base.tar}\n"
            f"    artifacts: [{entry}]\n")
    with pytest.raises(SpecError) as caught:
        load_spec(make(tmp_path, spec))
    assert str(caught.value) == message


def test_one_fetch_node_per_distinct_artifact_feeds_every_build(tmp_path: Path) -> None:
    project = open_(make(tmp_path), tmp_path / "cache")
    fetches = sorted(n for n in project.graph if n.startswith("fetch:"))
    assert fetches == [f"fetch:{SUM_A}", f"fetch:{SUM_B}"]
    assert sorted(project.graph.successors(f"fetch:{SUM_A}")) == [
        "build:base", "build:one", "build:two"]
    assert sorted(project.graph.successors(f"fetch:{SUM_B}")) == ["build:one"]
    assert project.downloads[SUM_A].names == ("nats_py-2.16.0-py3-none-any.whl",)


def test_checksum_change_changes_exactly_the_images_using_it(tmp_path: Path) -> None:
    spec_file = make(tmp_path)
    before = {n: b.digest for n, b in open_(spec_file, tmp_path / "c1").images.items()}
    # Another cache folder, or another url for the same bytes: same identity.
    moved = spec_file.read_text().replace("https://example.org/dl/", "https://mirror.example/")
    spec_file.write_text(moved)
    same = {n: b.digest for n, b in open_(spec_file, tmp_path / "c2").images.items()}
    assert same == before
    spec_file.write_text(moved.replace(SUM_B, "c" * 64))
    after = {n: b.digest for n, b in open_(spec_file, tmp_path / "c2").images.items()}
    assert {n for n in after if after[n] != before[n]} == {"one"}


def test_descriptor_hands_cekit_the_cached_file(tmp_path: Path) -> None:
    project = open_(make(tmp_path), tmp_path / "cache")
    # the image's artifacts are in the module cpb generates for it (copied before its modules)
    module = project.images["one"].generated["modules/artifacts/module.yaml"]
    assert json.dumps(str(tmp_path / "cache" / "sha256" / SUM_B)) in module
    assert f'sha256: "{SUM_B}"' in module and "https://" not in module
    assert "https://" not in project.images["one"].descriptor


def test_md5_only_artifact_is_keyed_and_declared_by_md5(tmp_path: Path) -> None:
    md5 = "0123456789abcdef" * 2
    spec = ("project: p\nimages:\n  a:\n    rootfs: {tar: base.tar}\n"
            f"    artifacts: [{{url: 'https://h/x.whl', md5: {md5}}}]\n")
    project = open_(make(tmp_path, spec), tmp_path / "cache")
    assert f"fetch:md5-{md5}" in project.graph
    module = project.images["a"].generated["modules/artifacts/module.yaml"]
    assert json.dumps(str(tmp_path / "cache" / "md5" / md5)) in module
    assert f'md5: "{md5}"' in module


def test_local_file_with_a_wrong_declared_checksum_is_refused(tmp_path: Path) -> None:
    spec = ("project: p\nimages:\n  a:\n    rootfs: {tar: base.tar}\n"
            f"    artifacts: [{{path: data/local.bin, sha256: {SUM_A}}}]\n")
    with pytest.raises(SpecError, match=f"artifact local.bin \\(data/local.bin\\): sha256 "
                                        f"mismatch: expected {SUM_A}, got [0-9a-f]{{64}}$"):
        open_(make(tmp_path, spec), tmp_path / "cache")


def test_plan_fetches_what_is_missing_and_nothing_cached(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    project = open_(make(tmp_path), cache)
    pending = {p.task: p.reasons for p in make_plan(project) if p.pending}
    assert pending[f"fetch:{SUM_B}"] == [
        f"artifact tool+1.tgz (sha256 {SUM_B[:12]}) is not in the cache {cache}"]
    (cache / "sha256").mkdir(parents=True)
    (cache / "sha256" / SUM_B).write_bytes(b"verified before")
    assert fetch_uptodate(project, SUM_B)
    assert not fetch_uptodate(project, SUM_A)
    assert f"fetch:{SUM_B}" not in {p.task for p in make_plan(project) if p.pending}


def test_fetch_is_skipped_when_every_image_using_it_is_built(tmp_path: Path) -> None:
    runner = podman_fake()
    project = open_project(make(tmp_path), runner=runner, cache=ArtifactCache(tmp_path / "c"))
    one = project.images["one"]
    runner.storage.add_image("sha256:1", [one.digest_ref], {"io.cpb.digest": one.digest})
    project.store.invalidate()
    assert fetch_uptodate(project, SUM_B)  # only `one` uses it, and it is built
    assert not fetch_uptodate(project, SUM_A)  # base and two still need it
