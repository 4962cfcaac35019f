"""The spec as a networkx graph of file-level tasks.

Nodes are task names, `KIND:IMAGE`; an edge A → B means B needs A's output.
The graph is built from the spec alone, before anything runs, and its order
is deterministic (lexicographic among tasks that are free to go).
"""

from __future__ import annotations

from collections.abc import Iterable

import networkx as nx

from cpb.errors import GraphError
from cpb.spec.model import ProjectSpec

# Task kinds in the order they happen for one image. fetch:, push: and pod:
# nodes join the same graph later.
KINDS = ("rootfs", "render", "build", "tag")


def task_name(kind: str, image: str) -> str:
    return f"{kind}:{image}"


def split_task(name: str) -> tuple[str, str]:
    kind, _, image = name.partition(":")
    return kind, image


def expand_graph(spec: ProjectSpec) -> nx.DiGraph:
    graph = nx.DiGraph()
    for name, image in spec.images.items():
        render, build, tag = (task_name(k, name) for k in ("render", "build", "tag"))
        graph.add_node(render, kind="render", image=name)
        graph.add_node(build, kind="build", image=name)
        graph.add_node(tag, kind="tag", image=name)
        graph.add_edge(render, build)
        graph.add_edge(build, tag)
        if image.rootfs is not None:
            rootfs = task_name("rootfs", name)
            graph.add_node(rootfs, kind="rootfs", image=name)
            graph.add_edge(rootfs, build)
        if image.parent is not None:
            graph.add_edge(task_name("build", image.parent), build)
        for artifact in image.artifacts:
            if artifact.url is not None:
                # one node per distinct artifact, shared by every image using it
                fetch = task_name("fetch", artifact.key)
                graph.add_node(fetch, kind="fetch", image=artifact.key)
                graph.add_edge(fetch, build)
        if spec.registry is not None:
            push = task_name("push", name)
            graph.add_node(push, kind="push", image=name)
            graph.add_edge(tag, push)
    for pod_name, pod in spec.pods.items():
        # A pod needs the tagged images of its containers (see pods.py).
        node = task_name("pod", pod_name)
        graph.add_node(node, kind="pod", pod=pod_name)
        for container in pod.containers:
            graph.add_edge(task_name("tag", container.image), node)
    if not nx.is_directed_acyclic_graph(graph):
        cycle = [edge[0] for edge in nx.find_cycle(graph)]
        raise GraphError("task graph has a cycle: " + " -> ".join([*cycle, cycle[0]]))
    return graph


def ordered(graph: nx.DiGraph) -> list[str]:
    """Every task, dependencies first; among tasks free to go, one image's
    tasks together (by image name, then in the order they happen)."""
    rank = {kind: index for index, kind in enumerate(KINDS)}

    def key(task: str) -> tuple[str, int, str]:
        kind, image = split_task(task)
        return (image, rank.get(kind, len(rank)), kind)

    return list(nx.lexicographical_topological_sort(graph, key=key))


def image_order(spec: ProjectSpec) -> list[str]:
    """Images, each after the image it is built from."""
    images = nx.DiGraph()
    images.add_nodes_from(spec.images)
    images.add_edges_from((i.parent, i.name) for i in spec.images.values() if i.parent)
    return list(nx.lexicographical_topological_sort(images))


def closure(graph: nx.DiGraph, targets: Iterable[str]) -> set[str]:
    """The targets and everything they need."""
    needed: set[str] = set()
    for target in targets:
        needed.add(target)
        needed.update(nx.ancestors(graph, target))
    return needed
