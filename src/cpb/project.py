"""The pipeline up to the point where tasks can run: load → expand → resolve.

`open_project` is what `cpb plan`, `cpb build` and a project's dodo.py all
call; it reads cpb.yaml, builds the task graph and resolves every image's
input digest, asking podman once for the state of local storage.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

import networkx as nx

from cpb.adapters.fetch import ArtifactCache, Download, collect_downloads
from cpb.adapters.podman import DIGEST_LABEL, ImageStore, Snapshot
from cpb.adapters.registry import Registry
from cpb.adapters.runner import Runner
from cpb.graph import expand_graph, image_order
from cpb.resolve.digest import FileHasher
from cpb.resolve.images import ImageBuild, resolve_images
from cpb.spec.consent import HostPaths
from cpb.spec.model import ProjectSpec, load_spec
from cpb.state import StateDir
from cpb.tasks.pods import PodBuild, PodStore, resolve_pods


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
    _checking: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def built(self, image: str) -> bool:
        """`image` is in local storage, made from its current inputs.

        Its digest tag `cpb-<digest12>` names the inputs. An image under that
        tag that cpb did not record making (another checkout, a CI runner
        sharing storage, a hand-made tag) must also carry the full digest as
        its `io.cpb.resolve.digest` label: those are read once per listing, in one
        `podman image inspect`, and recorded so the next run need not ask.
        """
        build = self.images[image]
        snap = self.store.snapshot()
        if snap.image_id(build.digest_ref) is None:
            return False
        self._check_unrecorded(snap)
        return snap.holds(build.digest_ref, DIGEST_LABEL, build.digest)

    def _check_unrecorded(self, snap: Snapshot) -> None:
        with self._checking:
            if snap.checked:
                return
            unknown: dict[str, str] = {}
            for name, build in self.images.items():
                image_id = snap.image_id(build.digest_ref)
                if image_id is None or image_id in snap.labels:
                    continue
                stamp = self.state.read_stamp(f"build:{name}") or {}
                if stamp.get("image_id") != image_id or stamp.get("digest") != build.digest:
                    unknown[name] = image_id
            labels = self.store.labels_of(list(unknown.values())) if unknown else {}
            # Only a project that has run before keeps records (a plan in a
            # fresh checkout writes nothing).
            if self.state.root.is_dir():
                for name, image_id in unknown.items():
                    build = self.images[name]
                    if labels.get(image_id, {}).get(DIGEST_LABEL) == build.digest:
                        self.record_build(name, image_id)
            snap.checked = True

    def record_build(self, image: str, image_id: str | None, **extra: str) -> None:
        """The build record: what made the image under the digest tag."""
        build = self.images[image]
        self.state.write_stamp(f"build:{image}", {
            "digest": build.digest, "components": build.components, "image_id": image_id,
            **extra})


def open_project(spec_file: Path, *, runner: Runner | None = None,
                 builtin_modules: Path | None = None,
                 cache: ArtifactCache | None = None, registry_cache: bool = True,
                 host_paths: HostPaths | None = None) -> Project:
    """`host_paths`: host paths outside the project the user allowed (consent.py)."""
    runner = runner or Runner()
    cache = cache or ArtifactCache()
    spec = load_spec(spec_file, builtin_modules=builtin_modules, host_paths=host_paths)
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
