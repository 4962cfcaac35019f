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
from .fetch import ArtifactCache, Download, collect_downloads
from .graph import expand_graph, image_order
from .podman import ImageStore
from .pods import PodBuild, PodStore, resolve_pods
from .registry import Registry
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
    cache: ArtifactCache = field(default_factory=ArtifactCache)
    downloads: dict[str, Download] = field(default_factory=dict)  # by `fetch:` key
    registry: Registry | None = None  # None: no `registry:` in the spec, never asked
    registry_cache: bool = True  # pull a build's result from the registry when it has it
    pods: dict[str, PodBuild] = field(default_factory=dict)
    pod_store: PodStore | None = None


def open_project(spec_file: Path, *, runner: Runner | None = None,
                 builtin_modules: Path | None = None,
                 cache: ArtifactCache | None = None, registry_cache: bool = True) -> Project:
    runner = runner or Runner()
    cache = cache or ArtifactCache()
    spec = load_spec(spec_file, builtin_modules=builtin_modules)
    graph = expand_graph(spec)
    state = StateDir(spec.root)
    store = ImageStore(runner)
    hasher = FileHasher(state.hash_cache)
    images = resolve_images(spec, image_order(spec), store.snapshot, hasher, cache.path)
    if state.root.is_dir():
        # Only a project that has run before keeps a hash cache: a plan in a
        # fresh checkout must not write anything.
        hasher.save()
    registry = Registry(spec.registry) if spec.registry is not None else None
    return Project(spec=spec, graph=graph, images=images, state=state, store=store,
                   runner=runner, cache=cache, downloads=collect_downloads(spec),
                   registry=registry, registry_cache=registry_cache,
                   pods=resolve_pods(spec, images))
