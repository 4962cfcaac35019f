"""The spec as a networkx graph of file-level tasks.

Nodes are task names, `KIND:SUBJECT`; an edge A → B means B needs A's
output. Each kind of task says which tasks of its kind a spec has and what
each needs (`TaskKind.nodes`, see cpb.tasks.table); this module only puts
them together. The graph is built from the spec alone, before anything
runs, and its order is deterministic (lexicographic among tasks that are
free to go).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

import networkx as nx

from cpb.errors import GraphError
from cpb.naming import split_task, task_name
from cpb.spec.model import ProjectSpec


class NodeLike(Protocol):
    @property
    def subject(self) -> str: ...
    @property
    def needs(self) -> tuple[str, ...]: ...


class KindLike(Protocol):
    """What the graph needs of a task kind (cpb.tasks.kind.TaskKind has it)."""

    @property
    def name(self) -> str: ...
    @property
    def nodes(self) -> Callable[[ProjectSpec], Iterable[NodeLike]]: ...


def expand_graph(spec: ProjectSpec, kinds: Sequence[KindLike]) -> nx.DiGraph:
    """The task graph of `spec`; `kinds` in the order one subject's tasks happen."""
    graph = nx.DiGraph()
    edges: list[tuple[str, str]] = []
    for rank, kind in enumerate(kinds):
        for node in kind.nodes(spec):
            name = task_name(kind.name, node.subject)
            graph.add_node(name, kind=kind.name, subject=node.subject, rank=rank)
            edges.extend((need, name) for need in node.needs)
    for need, name in edges:
        if need not in graph:
            raise GraphError(f"task {name} needs {need}, which the spec does not have")
        graph.add_edge(need, name)
    if not nx.is_directed_acyclic_graph(graph):
        cycle = [edge[0] for edge in nx.find_cycle(graph)]
        raise GraphError("task graph has a cycle: " + " -> ".join([*cycle, cycle[0]]))
    return graph


def ordered(graph: nx.DiGraph) -> list[str]:
    """Every task, dependencies first; among tasks free to go, one subject's
    tasks together (by subject, then in the order their kinds happen).

    nx.lexicographical_topological_sort with this key, ties broken the same
    way (by the order tasks were added), without its per-node graph views:
    a plan orders thousands of tasks.
    """
    nodes, children = graph.nodes, graph.succ
    position = {task: i for i, task in enumerate(graph)}
    waiting = {task: len(needs) for task, needs in graph.pred.items()}

    def entry(task: str) -> tuple[str, int, str, int, str]:
        kind, subject = split_task(task)
        return (subject, nodes[task]["rank"], kind, position[task], task)

    free = [entry(task) for task, count in waiting.items() if count == 0]
    heapq.heapify(free)
    order: list[str] = []
    while free:
        task = heapq.heappop(free)[-1]
        order.append(task)
        for child in children[task]:
            waiting[child] -= 1
            if waiting[child] == 0:
                heapq.heappush(free, entry(child))
    if len(order) != len(waiting):
        raise nx.NetworkXUnfeasible("Graph contains a cycle or graph changed during iteration")
    return order


def image_order(spec: ProjectSpec) -> list[str]:
    """Images, each after the image it is built from; among those free to go, by name.

    nx.lexicographical_topological_sort of the images and their parents, without
    building that second graph: an image has one parent at most, and the spec's
    load has refused cycles.
    """
    children: dict[str, list[str]] = {}
    free: list[str] = []
    for image in spec.images.values():
        if image.parent:
            children.setdefault(image.parent, []).append(image.name)
        else:
            free.append(image.name)
    heapq.heapify(free)
    order: list[str] = []
    while free:
        name = heapq.heappop(free)
        order.append(name)
        for child in children.get(name, ()):
            heapq.heappush(free, child)
    return order


def closure(graph: nx.DiGraph, targets: Iterable[str]) -> set[str]:
    """The targets and everything they need."""
    needed: set[str] = set()
    for target in targets:
        if target not in graph:  # as nx.ancestors would
            raise nx.NetworkXError(f"The node {target} is not in the digraph.")
        needed.add(target)
    # one walk for all targets (nx.ancestors walks again for each)
    needs, todo = graph.pred, list(needed)
    while todo:
        for need in needs[todo.pop()]:
            if need not in needed:
                needed.add(need)
                todo.append(need)
    return needed
