"""The spec as a graph of file-level tasks, and the networkx graph doit runs.

Nodes are task names, `KIND:SUBJECT`; an edge A → B means B needs A's
output. Each kind of task says which tasks of its kind a spec has and what
each needs (`TaskKind.nodes`, see cpb.tasks.table); this module only puts
them together. The graph is built from the spec alone, before anything
runs, and its order is deterministic (lexicographic among tasks that are
free to go).

`expand_graph` returns a `TaskGraph`: networkx's own layout (`nodes`, `pred`
and `succ` dicts) and the part of `networkx.DiGraph`'s interface cpb walks,
without importing networkx, which costs more than a plan of hundreds of
images does (~0.2 s: it registers every algorithm it has). A plan only walks
the graph; a run gives doit the `networkx.DiGraph` of the same nodes and
edges (`TaskGraph.to_networkx`, cpb.tasks.doitapp), and networkx finds the
cycle a graph that has one is refused for.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from cpb.errors import GraphError
from cpb.naming import split_task, task_name
from cpb.spec.model import ProjectSpec

if TYPE_CHECKING:
    import networkx as nx


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


class TaskGraph:
    """Tasks and what each needs, as networkx.DiGraph holds them (dicts in the
    order nodes and edges were added), with the methods cpb uses."""

    def __init__(self) -> None:
        self.nodes: dict[str, dict[str, Any]] = {}  # task: its attributes (kind, subject, rank)
        self.pred: dict[str, dict[str, dict[str, Any]]] = {}  # task: {what it needs: {}}
        self.succ: dict[str, dict[str, dict[str, Any]]] = {}  # task: {what needs it: {}}
        self._added: list[tuple[str, str]] = []  # the edges as added, for to_networkx

    def add_node(self, task: str, **attributes: Any) -> None:
        if task not in self.nodes:
            self.nodes[task], self.pred[task], self.succ[task] = {}, {}, {}
        self.nodes[task].update(attributes)

    def add_edge(self, need: str, task: str) -> None:
        self.add_node(need)
        self.add_node(task)
        if task not in self.succ[need]:
            self._added.append((need, task))
        self.succ[need][task] = {}
        self.pred[task][need] = {}

    def __contains__(self, task: object) -> bool:
        return task in self.nodes

    def __iter__(self) -> Iterator[str]:
        return iter(self.nodes)

    def __len__(self) -> int:
        return len(self.nodes)

    def predecessors(self, task: str) -> Iterator[str]:
        return iter(self.pred[task])

    def successors(self, task: str) -> Iterator[str]:
        return iter(self.succ[task])

    def out_degree(self, task: str) -> int:
        return len(self.succ[task])

    @property
    def edges(self) -> list[tuple[str, str]]:
        """(need, task) for every edge, in networkx's order (by need, as added)."""
        return [(need, task) for need, tasks in self.succ.items() for task in tasks]

    def to_networkx(self) -> nx.DiGraph:
        """The networkx.DiGraph of the same nodes (with their attributes) and edges."""
        import networkx as nx  # only for a run (doit) and a graph with a cycle

        graph = nx.DiGraph()
        graph.add_nodes_from(self.nodes.items())
        graph.add_edges_from(self._added)  # in the same order: its pred and succ are ours
        return graph


def expand_graph(spec: ProjectSpec, kinds: Sequence[KindLike]) -> TaskGraph:
    """The task graph of `spec`; `kinds` in the order one subject's tasks happen."""
    graph = TaskGraph()
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
    try:
        ordered(graph)
    except GraphError:
        import networkx as nx  # to say which tasks form the cycle

        cycle = [edge[0] for edge in nx.find_cycle(graph.to_networkx())]
        raise GraphError("task graph has a cycle: " + " -> ".join([*cycle, cycle[0]])) from None
    return graph


def ordered(graph: TaskGraph | nx.DiGraph) -> list[str]:
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
        raise GraphError("task graph has a cycle")
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


def closure(graph: TaskGraph | nx.DiGraph, targets: Iterable[str]) -> set[str]:
    """The targets and everything they need."""
    needed: set[str] = set()
    for target in targets:
        if target not in graph:
            raise GraphError(f"task {target} is not in the task graph")
        needed.add(target)
    # one walk for all targets (nx.ancestors walks again for each)
    needs, todo = graph.pred, list(needed)
    while todo:
        for need in needs[todo.pop()]:
            if need not in needed:
                needed.add(need)
                todo.append(need)
    return needed
