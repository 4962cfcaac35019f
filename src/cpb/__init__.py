"""cpb — the ComputePods builder.

The pipeline, each step usable on its own::

    spec = load_spec(Path("cpb.yaml"))
    graph = expand_graph(spec)
    project = open_project(Path("cpb.yaml"))   # load + expand + resolve digests
    plan = make_plan(project)
"""

from __future__ import annotations

__version__ = "0.1.0"

from .errors import BuildError, CpbError, EnvironmentProblem, GraphError, SpecError
from .graph import expand_graph
from .plan import PlannedTask, make_plan
from .project import Project, open_project
from .resolve import ImageBuild
from .runner import Runner
from .spec import ImageSpec, ProjectSpec, load_spec

__all__ = [
    "BuildError", "CpbError", "EnvironmentProblem", "GraphError", "ImageBuild", "ImageSpec",
    "PlannedTask", "Project", "ProjectSpec", "Runner", "SpecError", "__version__",
    "expand_graph", "load_spec", "make_plan", "open_project",
]
