"""The pipeline up to the point where tasks can run: load → expand → resolve.

`open_project` is what `cpb plan`, `cpb build` and a project's dodo.py all
call; it reads cpb.yaml, builds the task graph and resolves every image's
input digest, asking podman once for the state of local storage.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import networkx as nx

from .digest import FileHasher
from .graph import expand_graph, image_order
from .podman import ImageStore
from .pods import PodBuild, PodStore, resolve_pods
from .resolve import ImageBuild, resolve_images
from .runner import Runner
from .spec import ProjectSpec, load_spec
from .state import StateDir


@dataclass
class Project:
    spec: ProjectSpec
    graph: nx.DiGraph
    images: dict[str, ImageBuild]
    state: StateDir
    store: ImageStore
    runner: Runner
    pods: dict[str, PodBuild] = field(default_factory=dict)
    pod_store: PodStore | None = None


def open_project(spec_file: Path, *, runner: Runner | None = None,
                 builtin_modules: Path | None = None) -> Project:
    runner = runner or Runner()
    spec = load_spec(spec_file, builtin_modules=builtin_modules)
    graph = expand_graph(spec)
    state = StateDir(spec.root)
    store = ImageStore(runner)
    hasher = FileHasher(state.hash_cache)
    images = resolve_images(spec, image_order(spec), store.snapshot, hasher)
    if state.root.is_dir():
        # Only a project that has run before keeps a hash cache: a plan in a
        # fresh checkout must not write anything.
        hasher.save()
    return Project(spec=spec, graph=graph, images=images, state=state, store=store,
                   runner=runner, pods=resolve_pods(spec, images))
