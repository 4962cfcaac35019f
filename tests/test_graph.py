from __future__ import annotations

from pathlib import Path

import networkx as nx

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
    assert nx.is_directed_acyclic_graph(graph)


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
