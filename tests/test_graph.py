from __future__ import annotations

from pathlib import Path

import networkx as nx
import pytest

from cpb.graph import closure, expand_graph, image_order, ordered
from cpb.spec.model import load_spec
from cpb.tasks.table import TASK_KINDS
from helpers import build_file_tree

SPEC = """
project: p
images:
  base: {rootfs: {tar: base.tar}}
  mid: {from: base}
  leaf: {from: mid}
  ext: {from: "debian:bookworm"}
"""


def spec(tmp_path: Path):  # type: ignore[no-untyped-def]
    build_file_tree(tmp_path, {"cpb.yaml": SPEC, "base.tar": "x"})
    return load_spec(tmp_path / "cpb.yaml")


def test_nodes_and_edges(tmp_path: Path) -> None:
    graph = expand_graph(spec(tmp_path), TASK_KINDS)
    assert set(graph) == {f"{k}:{i}" for k in ("render", "build", "tag")
                          for i in ("base", "mid", "leaf", "ext")} | {"rootfs:base"}
    assert set(graph.predecessors("build:mid")) == {"render:mid", "build:base"}
    assert set(graph.predecessors("build:base")) == {"render:base", "rootfs:base"}
    assert set(graph.predecessors("build:ext")) == {"render:ext"}
    assert list(graph.successors("build:leaf")) == ["tag:leaf"]
    as_networkx = graph.to_networkx()  # what doit is given: the same nodes and edges
    assert nx.is_directed_acyclic_graph(as_networkx)
    assert list(as_networkx.nodes(data=True)) == list(graph.nodes.items())
    assert list(as_networkx.edges) == graph.edges
    assert as_networkx.pred == graph.pred and as_networkx.succ == graph.succ
    assert all(list(as_networkx.predecessors(t)) == list(graph.predecessors(t)) for t in graph)


def test_order_is_deterministic_and_respects_edges(tmp_path: Path) -> None:
    graph = expand_graph(spec(tmp_path), TASK_KINDS)
    order = ordered(graph)
    assert order == ordered(expand_graph(spec(tmp_path), TASK_KINDS))
    position = {task: i for i, task in enumerate(order)}
    for a, b in graph.edges:
        assert position[a] < position[b]
    assert image_order(spec(tmp_path)) == ["base", "ext", "mid", "leaf"]


def test_closure_is_the_target_and_what_it_needs(tmp_path: Path) -> None:
    graph = expand_graph(spec(tmp_path), TASK_KINDS)
    assert closure(graph, ["tag:mid"]) == {"tag:mid", "build:mid", "render:mid",
                                           "build:base", "render:base", "rootfs:base"}


def test_order_and_closure_are_networkx_own(tmp_path: Path) -> None:
    # cpb walks the graph itself (nx's views cost more than the plan's checks);
    # its answers must be those of nx.lexicographical_topological_sort and nx.ancestors
    # (image_order: of the images and their parents)
    names = [f"i{(n * 7) % 23:02d}" for n in range(23)]  # added out of name order
    lines = ["project: p", "images:", "  i00: {rootfs: {tar: base.tar}}"]
    lines += [f"  {name}: {{from: {names[n // 2]}}}" if n % 3 else
              f"  {name}: {{from: \"debian:bookworm\"}}"
              for n, name in enumerate(names) if name != "i00"]
    build_file_tree(tmp_path, {"cpb.yaml": "\n".join(lines) + "\n", "base.tar": "x"})
    loaded = load_spec(tmp_path / "cpb.yaml")
    graph = expand_graph(loaded, TASK_KINDS)
    parents = nx.DiGraph()
    parents.add_nodes_from(loaded.images)
    parents.add_edges_from((i.parent, i.name) for i in loaded.images.values() if i.parent)
    assert image_order(loaded) == list(nx.lexicographical_topological_sort(parents))

    def key(task: str) -> tuple[str, int, str]:
        kind, _, subject = task.partition(":")
        return (subject, graph.nodes[task]["rank"], kind)

    as_networkx = graph.to_networkx()
    assert ordered(graph) == ordered(as_networkx) == list(
        nx.lexicographical_topological_sort(as_networkx, key=key))
    for targets in (["tag:i05"], ["tag:i05", "tag:i12", "build:i00"], list(graph)):
        assert closure(graph, targets) == set(targets).union(
            *(nx.ancestors(as_networkx, target) for target in targets))


def test_a_graph_with_a_cycle_is_refused_with_the_cycle() -> None:
    from dataclasses import dataclass

    from cpb.errors import GraphError

    @dataclass(frozen=True)
    class Node:
        subject: str
        needs: tuple[str, ...]

    @dataclass(frozen=True)
    class Kind:
        name: str
        nodes: object

    kinds = [Kind("a", lambda spec: [Node("x", ("b:x",))]),
             Kind("b", lambda spec: [Node("x", ("a:x",))])]
    with pytest.raises(GraphError, match="task graph has a cycle: a:x -> b:x -> a:x$"):
        expand_graph(None, kinds)  # type: ignore[arg-type]
