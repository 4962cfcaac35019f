"""cpb — the ComputePods builder.

The pipeline, each step usable on its own::

    spec = load_spec(Path("cpb.yaml"))
    graph = expand_graph(spec)
    project = open_project(Path("cpb.yaml"))   # load + expand + resolve digests
    plan = make_plan(project)

The names below are imported on first use, so that `cpb plan` with nothing
to do (see `cpb.noop`) does not pay for importing the whole pipeline.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_WHERE = {
    "BuildError": "errors", "CpbError": "errors", "EnvironmentProblem": "errors",
    "GraphError": "errors", "SpecError": "errors", "expand_graph": "graph",
    "PlannedTask": "plan", "make_plan": "plan", "Project": "project",
    "open_project": "project", "ImageBuild": "resolve", "Runner": "runner",
    "ImageSpec": "spec", "ProjectSpec": "spec", "load_spec": "spec",
}

__all__ = sorted([*_WHERE, "__version__"])


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module 'cpb' has no attribute {name!r}")
