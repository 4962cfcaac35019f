"""The pipeline up to the point where tasks can run: load → expand → resolve.

`open_project` is what `cpb plan`, `cpb build` and a project's dodo.py all
call; it reads cpb.yaml, builds the task graph and resolves every image's
input digest, asking podman once for the state of local storage. The
`Project` it returns is complete and frozen: tasks read it, nothing fills it
in later.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cpb.adapters.artifacts import ArtifactCache, Download
from cpb.adapters.cekit import cekit_version
from cpb.adapters.podman import ImageStore
from cpb.adapters.pods import PodStore
from cpb.adapters.runner import Runner
from cpb.graph import TaskGraph, expand_graph, image_order
from cpb.naming import PROJECT_LABEL
from cpb.resolve.digest import FileHasher
from cpb.resolve.downloads import collect_downloads
from cpb.resolve.images import ImageBuild, resolve_images
from cpb.resolve.memo import open_memo
from cpb.resolve.pods import PodBuild, resolve_pods
from cpb.resolve.rendermemo import RenderMemo
from cpb.resolve.runtime import with_runtime
from cpb.spec.consent import HostPaths
from cpb.spec.model import ProjectSpec, load_spec
from cpb.state import StateDir
from cpb.tasks.table import TASK_KINDS

if TYPE_CHECKING:
    from cpb.adapters.registry import Registry


@dataclass(frozen=True)
class Project:
    spec: ProjectSpec
    graph: TaskGraph  # to_networkx(): the networkx.DiGraph a run gives doit
    images: Mapping[str, ImageBuild]
    pods: Mapping[str, PodBuild]
    downloads: Mapping[str, Download]  # by `fetch:` subject (the artifact's cache key)
    state: StateDir
    runner: Runner
    store: ImageStore
    pod_store: PodStore
    cache: ArtifactCache
    registry: Registry | None  # None: no `registry:` in the spec, never asked
    registry_cache: bool  # pull a build's result from the registry when it has it
    hashes: FileHasher  # file hashes by stat; a build saves them for the next run
    renders: RenderMemo  # what the templates rendered; saved with the hashes


def open_project(spec_file: Path, *, runner: Runner,
                 builtin_modules: Path | None = None,
                 cache: ArtifactCache | None = None, registry_cache: bool = True,
                 host_paths: HostPaths | None = None, list_early: bool = False) -> Project:
    """`host_paths`: host paths outside the project the user allowed (consent.py);
    `list_early`: see resolve_project."""
    spec = load_project_spec(spec_file, builtin_modules=builtin_modules, host_paths=host_paths)
    return resolve_project(spec, runner=runner, cache=cache, registry_cache=registry_cache,
                           list_early=list_early)


def load_project_spec(spec_file: Path, *, builtin_modules: Path | None = None,
                      host_paths: HostPaths | None = None) -> ProjectSpec:
    """The spec, with what cpb itself adds to it (the runtime's wheel, cpb.resolve.runtime).

    A cpb.yaml or module.yaml validated by an earlier run is not parsed
    again (cpb.resolve.memo); the spec carries the memo for the run to save.
    """
    memo = open_memo(spec_file.resolve().parent)
    return with_runtime(load_spec(spec_file, builtin_modules=builtin_modules,
                                  host_paths=host_paths, memo=memo))


def resolve_project(spec: ProjectSpec, *, runner: Runner, cache: ArtifactCache | None = None,
                    registry_cache: bool = True, list_early: bool = False) -> Project:
    """The project of a loaded spec: its graph, digests, pods and stores.

    `list_early`: the caller will look at local storage (a plan, a build), so
    its one listing starts now and runs while the graph and the digests are
    computed.
    """
    cache = cache or ArtifactCache()
    store = ImageStore(runner)
    cekit = cekit_version(runner)
    if list_early:
        store.list_in_background()
    graph = expand_graph(spec, TASK_KINDS)
    state = StateDir(spec.root)
    hasher = FileHasher(state.hash_cache)
    renders = RenderMemo.open(spec.root)
    images = resolve_images(spec, image_order(spec), store.snapshot, hasher, cache.path,
                            cekit=cekit, renders=renders)
    registry = None
    if spec.registry is not None:
        from cpb.adapters.registry import Registry  # ssl and urllib: only for a registry

        registry = Registry(spec.registry)
    return Project(spec=spec, graph=graph, images=images, pods=resolve_pods(spec, images),
                   downloads=collect_downloads(spec), state=state, runner=runner, store=store,
                   pod_store=PodStore(runner, PROJECT_LABEL, spec.project), cache=cache,
                   registry=registry, registry_cache=registry_cache, hashes=hasher,
                   renders=renders)
