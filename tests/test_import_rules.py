"""The layers of cpb, as a test: who may import whom, and no cycles at all.

Every `import` counts, at the top of a module or inside a function, except
those under `if TYPE_CHECKING:` (they never run: annotations only).
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import networkx as nx
import pytest
import tomllib

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "cpb"
# Helpers every layer may use: they know nothing of cpb's concepts.
SMALL = {"cpb", "cpb.errors", "cpb.util", "cpb.resources"}


def module_name(path: Path, root: Path = SRC) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _type_checking_only(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports_of(path: Path, modules: set[str], root: Path = SRC) -> set[str]:
    """The cpb modules `path` imports when it runs."""
    found: set[str] = set()
    here = module_name(path, root)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _type_checking_only(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                prefix = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*prefix, base] if base else prefix)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names
                         if f"{base}.{alias.name}" in modules)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(), str(path)))
    return {name for name in found if name in modules and name != here}


def import_graph() -> nx.DiGraph:
    paths = sorted(PACKAGE.rglob("*.py"))
    modules = {module_name(p) for p in paths}
    graph = nx.DiGraph()
    graph.add_nodes_from(modules)
    for path in paths:
        graph.add_edges_from((module_name(path), target)
                             for target in imports_of(path, modules))
    # `import cpb.x.y` also runs the packages above it: those edges are not
    # imports of the package's own code, so the package itself is left out.
    graph.remove_edges_from([(a, b) for a, b in graph.edges if b == "cpb"])
    return graph


def imported(graph: nx.DiGraph, layer: str) -> set[tuple[str, str]]:
    return {(a, b) for a, b in graph.edges if a == layer or a.startswith(layer + ".")}


def test_no_import_cycles() -> None:
    cycles = list(nx.simple_cycles(import_graph()))
    assert cycles == [], cycles


def test_spec_imports_only_errors_and_small_helpers() -> None:
    wrong = {(a, b) for a, b in imported(import_graph(), "cpb.spec")
             if not b.startswith("cpb.spec") and b not in SMALL}
    assert wrong == set()


def test_adapters_know_nothing_of_the_project_tasks_or_cli() -> None:
    forbidden = ("cpb.project", "cpb.tasks", "cpb.cli", "cpb.graph", "cpb.workflow")
    wrong = {(a, b) for a, b in imported(import_graph(), "cpb.adapters")
             if b.startswith(forbidden)}
    assert wrong == set()


def test_tasks_never_import_the_cli() -> None:
    wrong = {(a, b) for a, b in imported(import_graph(), "cpb.tasks")
             if b.startswith("cpb.cli")}
    assert wrong == set()


def test_resolve_knows_nothing_of_tasks_or_cli() -> None:
    wrong = {(a, b) for a, b in imported(import_graph(), "cpb.resolve")
             if b.startswith(("cpb.tasks", "cpb.cli", "cpb.project"))}
    assert wrong == set()


def test_no_private_name_crosses_a_module() -> None:
    crossing = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("cpb"):
                crossing += [f"{path.name}: {node.module}.{a.name}" for a in node.names
                             if a.name.startswith("_") and not a.name.startswith("__")]
    assert crossing == []


def test_the_rules_see_imports_inside_functions(tmp_path: Path) -> None:
    """The checker itself: an import in a function body counts, a TYPE_CHECKING one does not."""
    module = tmp_path / "cpb" / "a.py"
    module.parent.mkdir()
    module.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                      "    from cpb import c\n\ndef f():\n    from cpb.b import x\n")
    assert imports_of(module, {"cpb.b", "cpb.c", "cpb.a"}, tmp_path) == {"cpb.b"}


# -- import only what a command needs ------------------------------------------------

HEAVY = ("cryptography", "networkx", "doit", "jinja2", "asyncio")
_PROBE = """
import json, os, runpy, sys
def leave(code):  # cpb ends with os._exit (cpb.cli.process): let the probe speak first
    raise SystemExit(code)
os._exit = leave
sys.argv = ["cpb", *json.loads(sys.argv[1])]
try:
    runpy.run_module("cpb", run_name="__main__", alter_sys=True)
except SystemExit as exc:
    code = exc.code
print(json.dumps([code, sorted(sys.modules)]), file=sys.stderr)
"""


def modules_loaded_by(argv: list[str], cwd: Path) -> tuple[object, set[str]]:
    """(exit code, top-level packages imported) of `cpb ARGV` in a fresh interpreter."""
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    proc = subprocess.run([sys.executable, "-c", _PROBE, json.dumps(argv)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    code, modules = json.loads(proc.stderr.splitlines()[-1])
    return code, {m.partition(".")[0] for m in modules}


@pytest.mark.parametrize("argv", [["--version"], ["--help"], ["build", "--help"]])
def test_version_and_help_import_no_pipeline(argv: list[str], tmp_path: Path) -> None:
    code, loaded = modules_loaded_by(argv, tmp_path)
    assert code in (0, None)
    assert "click" in loaded  # the probe does see what cpb imported
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))


def test_the_fast_path_imports_no_pipeline(tmp_path: Path) -> None:
    """The no-op fast path's own modules (its answer reads a record, lists storage)."""
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    proc = subprocess.run(
        [sys.executable, "-c", "import json, sys, cpb.cli.fastpath, cpb.noop.record; "
         "print(json.dumps(sorted(sys.modules)))"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=True)
    loaded = {m.partition(".")[0] for m in json.loads(proc.stdout)}
    assert "cpb" in loaded
    assert not loaded & {*HEAVY, "yaml"}, sorted(loaded & {*HEAVY, "yaml"})


def test_cpbs_doit_plugin_costs_a_plain_doit_nothing_of_the_pipeline(tmp_path: Path) -> None:
    """doit imports every `doit.BACKEND` plugin of the environment on every start, for any
    project: cpb's entry point must not drag in its pipeline (networkx, jinja2, the spec)."""
    declared = tomllib.loads((SRC.parent / "pyproject.toml").read_text())
    target = declared["project"]["entry-points"]["doit.BACKEND"]["cpb-json"]
    module, _, name = target.partition(":")
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    proc = subprocess.run(
        [sys.executable, "-c", f"import json, sys, {module}; getattr({module}, {name!r}); "
         "print(json.dumps(sorted(sys.modules)))"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=True)
    modules = set(json.loads(proc.stdout))
    assert module in modules and "doit.dependency" in modules
    heavy = {m for m in modules if m.partition(".")[0] in {"networkx", "jinja2", "yaml", "click"}
             or m.startswith(("cpb.graph", "cpb.spec", "cpb.resolve", "cpb.project"))}
    assert not heavy, sorted(heavy)


_PLAN_PROBE = """
import json, sys
from pathlib import Path
sys.path.insert(0, sys.argv[2])
from fakes import podman_fake
import cpb.resolve.memo
from cpb.project import open_project
from cpb.tasks.plan import make_plan
save = sys.argv[3] == "save"
if save:  # the files were just written: trust them anyway
    cpb.resolve.memo.RACY_MARGIN_NS = -10**12
project = open_project(Path(sys.argv[1]), runner=podman_fake())
if save:
    cpb.resolve.memo.save_memo(project.spec.root, project.spec.memo)
    project.renders.save()
make_plan(project)
print(json.dumps(sorted(sys.modules)))
"""


def rootfs_project(root: Path, rest: str = "") -> None:
    """cpb.yaml with image `base` from base.tar, then `rest` (more of base, other images, pods)."""
    (root / "cpb.yaml").write_text("project: p\nimages:\n  base:\n    rootfs: {tar: base.tar}\n"
                                   + rest)
    (root / "base.tar").write_text("tar")


def probe(root: Path, code: str, *args: str) -> str:
    """What `code` prints in a fresh interpreter in `root` (argv: cpb.yaml, tests/, `args`)."""
    env = {**os.environ, "PYTHONPATH": str(SRC), "XDG_STATE_HOME": str(root / "state")}
    return subprocess.run([sys.executable, "-c", code, str(root / "cpb.yaml"),
                           str(SRC.parent / "tests"), *args], cwd=root, env=env,
                          capture_output=True, text=True, timeout=60, check=True).stdout


def plan_imports(root: Path, *, save: bool = False) -> set[str]:
    """The top-level packages a plan of `root`'s cpb.yaml imported, in a fresh
    interpreter; `save`: then save the spec and render memos, as a build would."""
    out = probe(root, _PLAN_PROBE, "save" if save else "plan")
    loaded = {m.partition(".")[0] for m in json.loads(out.splitlines()[-1])}
    assert "cpb" in loaded  # the probe saw a whole plan (it prints after make_plan)
    return loaded


def test_a_plan_without_certificates_to_read_imports_no_cryptography(tmp_path: Path) -> None:
    """cryptography (~30-60 ms) is for making and reading certificates (`cpb up`, `cpb pki`)."""
    rootfs_project(tmp_path, "pods:\n  farm:\n    containers:\n      - {image: base}\n")
    assert "cryptography" not in plan_imports(tmp_path)


def test_a_plan_of_specs_known_valid_imports_no_yaml_parser(tmp_path: Path) -> None:
    """PyYAML is for parsing; cpb.yaml and module.yaml files unchanged since they
    passed their schema are not parsed again (cpb.spec.memo)."""
    rootfs_project(tmp_path, "    modules: [m]\n")
    (tmp_path / "modules" / "m").mkdir(parents=True)
    (tmp_path / "modules" / "m" / "module.yaml").write_text("name: m\nversion: '1'\n")
    (tmp_path / ".cpb").mkdir()
    assert "yaml" in plan_imports(tmp_path, save=True)  # parsed, then remembered
    assert "yaml" not in plan_imports(tmp_path)


def test_a_plan_of_images_rendered_before_imports_no_jinja2(tmp_path: Path) -> None:
    """Jinja2 (~40 ms with its templates) is for rendering; the descriptors of values
    rendered before come from the render memo (cpb.resolve.rendermemo)."""
    rootfs_project(tmp_path, "    packages: [gcc]\n")
    assert "jinja2" in plan_imports(tmp_path, save=True)  # rendered, then remembered
    assert "jinja2" not in plan_imports(tmp_path)
    rootfs_project(tmp_path, "    packages: [make]\n")
    assert "jinja2" in plan_imports(tmp_path)  # a new value is rendered


def test_a_plan_walks_the_task_graph_without_networkx_and_doit_gets_a_digraph(
        tmp_path: Path) -> None:
    """networkx (~0.2 s to import) is the graph doit runs (cpb.graph.TaskGraph.to_networkx);
    a plan only walks the same nodes and edges."""
    rootfs_project(tmp_path, "  leaf: {from: base}\n")
    assert "networkx" not in plan_imports(tmp_path)
    out = probe(tmp_path, "import sys; sys.path.insert(0, sys.argv[2]); from pathlib import Path; "
                "from fakes import podman_fake; from cpb.project import open_project; "
                "from cpb.tasks.doitapp import task_dicts; "
                "tasks = task_dicts(open_project(Path(sys.argv[1]), runner=podman_fake())); "
                "print(len(tasks), 'networkx' in sys.modules)").split()
    assert out == ["7", "True"]  # rootfs, render, build and tag of base; the three of leaf
