"""cpb — the ComputePods builder.

The pipeline, each step usable on its own::

    spec = load_spec(Path("cpb.yaml"))
    graph = expand_graph(spec)
    project = open_project(Path("cpb.yaml"))   # load + expand + resolve digests
    plan = make_plan(project)

The names below are imported on first use, so that `cpb plan` with nothing
to do (see `cpb.cli.fastpath`) does not pay for importing the whole pipeline.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_WHERE = {
    "BuildError": "errors", "CpbError": "errors", "EnvironmentProblem": "errors",
    "GraphError": "errors", "SpecError": "errors", "expand_graph": "graph",
    "PlannedTask": "tasks.plan", "make_plan": "tasks.plan", "Project": "project",
    "open_project": "project", "ImageBuild": "resolve.images", "Runner": "adapters.runner",
    "ImageSpec": "spec.model", "ProjectSpec": "spec.model", "load_spec": "spec.model",
}

__all__ = sorted([*_WHERE, "__version__"])


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module 'cpb' has no attribute {name!r}")
