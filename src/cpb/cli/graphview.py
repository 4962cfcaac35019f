"""`cpb graph`: the task graph as a picture, coloured by what `cpb plan` decides.

The states come from `make_plan` (the same up-to-date checks a build makes)
and from the record of the last run (`tasks/runlog.py`); the plan's reasons
become tooltips. Text formats (dot, mermaid) are made here; svg and png are
graphviz's `dot` rendering the dot text.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from cpb.adapters.runner import CommandFailed, Runner
from cpb.errors import EnvironmentProblem, SpecError
from cpb.naming import split_task
from cpb.project import Project
from cpb.tasks.plan import make_plan
from cpb.tasks.regcache import cache_hit
from cpb.tasks.runlog import read_runs

FORMATS = ("dot", "mermaid", "svg", "png")
# state: (label in the legend, fill colour, border colour)
STATES = {
    "pending": ("pending", "#ffe08a", "#b8860b"),
    "uptodate": ("up to date", "#c8e6c9", "#2e7d32"),
    "pull": ("will pull", "#bbdefb", "#1565c0"),
    "failed": ("failed last run", "#ffcdd2", "#c62828"),
}
_SHAPES = {"rootfs": "cylinder", "fetch": "note", "render": "box", "build": "box3d",
           "tag": "cds", "push": "folder", "pod": "component"}


@dataclass(frozen=True)
class Node:
    task: str
    state: str
    reasons: list[str] = field(default_factory=list)

    @property
    def tooltip(self) -> str:
        label = STATES[self.state][0]
        return "\n".join([f"{self.task}: {label}", *self.reasons])


@dataclass(frozen=True)
class TaskGraph:
    nodes: list[Node]  # in the plan's order
    edges: list[tuple[str, str]]  # (needed, needing), sorted


def task_graph(project: Project, targets: Iterable[str]) -> TaskGraph:
    """The targets and what they need, each task with its state and reasons."""
    planned = make_plan(project, targets)
    runs = read_runs(project.state)
    nodes = []
    for item in planned:
        kind, name = split_task(item.task)
        if not item.pending:
            state = "uptodate"
        elif (last := runs.get(item.task)) is not None and last.result == "failed":
            state = "failed"
        elif kind in ("build", "tag") and cache_hit(project, name) is not None:
            state = "pull"
        else:
            state = "pending"
        nodes.append(Node(item.task, state, list(item.reasons)))
    names = {n.task for n in nodes}
    edges = sorted((a, b) for a, b in project.graph.edges if a in names and b in names)
    return TaskGraph(nodes, edges)


def format_for(output: Path | None, given: str | None) -> str:
    """The --format, else the output file's extension, else dot."""
    if given:
        return given
    if output is not None:
        suffix = output.suffix.lower().lstrip(".")
        if suffix in ("gv", "dot"):
            return "dot"
        if suffix in ("mmd", "mermaid"):
            return "mermaid"
        if suffix in FORMATS:
            return suffix
        raise SpecError(f"cannot tell the format from {output.name!r}; give --format "
                        f"({'|'.join(FORMATS)})")
    return "dot"


def _quote(text: str) -> str:
    return json.dumps(text)  # a dot string: double quotes, backslash escapes


def to_dot(graph: TaskGraph, title: str) -> str:
    lines = [
        f"digraph {_quote(title)} {{",
        "  rankdir=LR;",
        f"  graph [fontname=\"Helvetica\", label={_quote(title)}, labelloc=t, fontsize=16];",
        "  node [fontname=\"Helvetica\", fontsize=11, style=filled, penwidth=1.4];",
        "  edge [color=\"#555555\", arrowsize=0.7];",
    ]
    for node in graph.nodes:
        _, fill, border = STATES[node.state]
        kind = split_task(node.task)[0]
        label = node.task if kind != "fetch" else "fetch:" + split_task(node.task)[1][:12]
        lines.append(f"  {_quote(node.task)} [label={_quote(label)}, "
                     f"shape={_SHAPES.get(kind, 'box')}, fillcolor=\"{fill}\", "
                     f"color=\"{border}\", tooltip={_quote(node.tooltip)}];")
    for a, b in graph.edges:
        lines.append(f"  {_quote(a)} -> {_quote(b)};")
    lines.append("  subgraph cluster_legend {")
    lines.append("    label=\"state\"; fontsize=11; color=\"#999999\"; style=dashed;")
    shown = [s for s in STATES if any(n.state == s for n in graph.nodes)] or ["uptodate"]
    for state in shown:
        label, fill, border = STATES[state]
        lines.append(f"    {_quote('legend:' + state)} [label={_quote(label)}, shape=box, "
                     f"fillcolor=\"{fill}\", color=\"{border}\", tooltip={_quote(label)}];")
    lines.append("  }")
    lines.append("}")
    return "\n".join(lines) + "\n"


def to_mermaid(graph: TaskGraph) -> str:
    """A flowchart for a README or an issue; reasons as %% comments (mermaid
    tooltips need the page's scripts, which GitHub does not run)."""
    ids = {node.task: f"t{index}" for index, node in enumerate(graph.nodes)}
    lines = ["flowchart LR"]
    for node in graph.nodes:
        label = node.task.replace('"', "'")
        lines.append(f"    {ids[node.task]}[\"{label}\"]:::{node.state}")
        for reason in node.reasons:
            lines.append(f"    %% {node.task}: {' '.join(reason.split())}")
    for a, b in graph.edges:
        lines.append(f"    {ids[a]} --> {ids[b]}")
    for state, (_, fill, border) in STATES.items():
        lines.append(f"    classDef {state} fill:{fill},stroke:{border},color:#000")
    return "\n".join(lines) + "\n"


def check_dot(fmt: str) -> None:
    if shutil.which("dot") is None:
        raise EnvironmentProblem(f"`cpb graph --format {fmt}` needs graphviz's `dot`, which is "
                                 "not installed; install the Debian package graphviz "
                                 "(apt-get install graphviz), or use --format dot|mermaid")


def render_with_dot(runner: Runner, dot_text: str, fmt: str) -> bytes:
    """svg or png bytes from graphviz's `dot` (one process, argument list)."""
    check_dot(fmt)
    with tempfile.TemporaryDirectory(prefix="cpb-graph-") as tmp:
        out = Path(tmp) / f"graph.{fmt}"
        try:
            runner.run(["dot", f"-T{fmt}", "-o", str(out)], stdin=dot_text.encode())
        except CommandFailed as exc:
            raise EnvironmentProblem(f"graphviz's dot failed: {exc.tail(3)}") from None
        return out.read_bytes()
