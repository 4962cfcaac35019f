"""The benchmark's counted claims, on a small synthetic project (issue 6).

Counts, never timings: a no-op starts the same few podman processes
whatever the number of images, a leaf's change runs one build, a base's
change rebuilds exactly the images built on it. cekit's build step is the
benchmark's stub (a one-line `podman build`); everything else is real.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import networkx as nx
import pytest

from benchmarks.synthetic import StubRunner, make_synthetic, module_files
from benchmarks.synthetic import built as stub_built
from cpb.adapters.runner import ProcessRunner, Runner
from cpb.project import open_project
from cpb.tasks.doitapp import run_doit
from cpb.tasks.plan import make_plan
from helpers import image_ids, remove_project_images

pytestmark = pytest.mark.integration


def build(root: Path, runner: Runner, jobs: int = 2) -> int:
    project = open_project(root / "cpb.yaml", runner=runner)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = run_doit(project, [], jobs=jobs)
    if code != 0:
        print(out.getvalue())  # shown by pytest when the test fails
    return code


@pytest.fixture
def synthetic(tmp_path: Path, project_name: str):  # type: ignore[no-untyped-def]
    made: list[str] = []

    def make(images: int) -> tuple[Path, dict[str, str | None]]:
        name = f"{project_name}-{images}"
        made.append(name)
        root = tmp_path / name
        parents = make_synthetic(root, name, images, bases=2, levels=3)
        assert build(root, StubRunner()) == 0
        return root, parents

    yield make
    for name in made:
        remove_project_images(name)


def noop_counts(root: Path) -> tuple[dict[str, int], dict[str, int]]:
    plan_runner, build_runner = ProcessRunner(), ProcessRunner()
    planned = make_plan(open_project(root / "cpb.yaml", runner=plan_runner))
    assert not [p.task for p in planned if p.pending]
    assert build(root, build_runner) == 0
    return dict(plan_runner.started), dict(build_runner.started)


def test_noop_process_count_does_not_grow_with_images(synthetic) -> None:  # type: ignore[no-untyped-def]
    small, _ = synthetic(3)
    large, _ = synthetic(9)
    assert noop_counts(small) == noop_counts(large) == ({"buildah": 1}, {"buildah": 1})


def test_changes_rebuild_exactly_what_depends_on_them(synthetic, project_name: str) -> None:  # type: ignore[no-untyped-def]
    root, parents = synthetic(9)
    children = nx.DiGraph((p, c) for c, p in parents.items() if p)
    leaf = "l3-0000"
    assert children.out_degree(leaf) == 0
    before = image_ids(f"{project_name}-9")

    data = module_files(root, leaf)[2]
    data.write_text(data.read_text() + "changed\n")
    stub = StubRunner()
    assert build(root, stub) == 0
    assert stub_built(stub) == [leaf] and stub.started["cekit"] == 1

    data = module_files(root, "base01")[2]
    data.write_text(data.read_text() + "changed\n")
    stub = StubRunner()
    assert build(root, stub) == 0
    expected = {"base01", *nx.descendants(children, "base01")}
    assert len(expected) > 2
    assert sorted(stub_built(stub)) == sorted(expected)

    after = image_ids(f"{project_name}-9")
    moved = {tag.split(":")[0] for tag in before
             if tag.endswith(":1") and before[tag] != after.get(tag)}
    assert moved == expected | {leaf}
