"""Podman adapter: what local storage holds, and the few changes cpb makes to it.

`ImageStore.snapshot` asks podman once for every image; all up-to-date
checks read that one answer, so a no-op run starts one podman process no
matter how many images the project has.
"""

from __future__ import annotations

import json
import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from .errors import EnvironmentProblem
from .runner import CommandFailed, Runner

PODMAN = "podman"
# Podman's local short names: `foo/bar:1` is stored as `localhost/foo/bar:1`.
LOCAL_PREFIX = "localhost/"

SANDBOX_HINT = ("podman cannot start containers here (a sandbox that forbids raising rlimits); "
                "point CONTAINERS_CONF at a containers.conf with [containers] default_ulimits = "
                "[\"nofile=1024:1024\", \"nproc=4096:4096\"] and [engine] runtime = \"runc\" "
                "(cpb's repository has one: .ci/containers.conf)")
_SANDBOX_SIGNS = ("setrlimit", "error setting rlimit", "cgroups in hybrid mode")
_QUERY_ATTEMPTS = 8  # ~20 s of retrying: busy shared storage (CI) races often
_TRANSIENT_SIGNS = ("image not known", "no such image", "layer not known")


def local_ref(ref: str) -> str:
    first = ref.split("/", 1)[0]
    if "/" in ref and ("." in first or ":" in first or first == "localhost"):
        return ref
    return LOCAL_PREFIX + ref


def is_transient(output: str) -> bool:
    return any(sign in output for sign in _TRANSIENT_SIGNS)


def sandbox_hint(output: str) -> str:
    return SANDBOX_HINT if any(sign in output for sign in _SANDBOX_SIGNS) else ""


@dataclass
class Snapshot:
    ids: dict[str, str] = field(default_factory=dict)  # full reference -> image id
    labels: dict[str, dict[str, str]] = field(default_factory=dict)  # image id -> labels

    def image_id(self, ref: str) -> str | None:
        return self.ids.get(local_ref(ref))

    def label(self, ref: str, key: str) -> str | None:
        image_id = self.image_id(ref)
        return None if image_id is None else self.labels.get(image_id, {}).get(key)


class ImageStore:
    def __init__(self, runner: Runner) -> None:
        self.runner = runner
        self._snapshot: Snapshot | None = None
        self._lock = threading.Lock()

    def snapshot(self) -> Snapshot:
        with self._lock:
            if self._snapshot is None:
                self._snapshot = self._query()
            return self._snapshot

    def invalidate(self) -> None:
        with self._lock:
            self._snapshot = None

    def _query(self) -> Snapshot:
        for attempt in range(1, _QUERY_ATTEMPTS + 1):
            try:
                out = self.runner.run([PODMAN, "images", "--format", "json"], timeout=300)
                break
            except CommandFailed as exc:
                # Listing races with another process removing images from the
                # same storage ("image not known"); the next listing is fine.
                if attempt == _QUERY_ATTEMPTS or not is_transient(exc.output):
                    raise EnvironmentProblem("`podman images` failed: "
                                             + (exc.tail(3) or str(exc))) from None
                time.sleep(0.5 * attempt + random.random())  # noqa: S311 - jitter only
        snap = Snapshot()
        for entry in json.loads(out or "[]"):
            image_id = entry.get("Id", "")
            snap.labels[image_id] = entry.get("Labels") or {}
            for name in entry.get("Names") or []:
                snap.ids[name] = image_id
        return snap

    def tag(self, source: str, *targets: str) -> None:
        self.runner.run([PODMAN, "tag", source, *targets], timeout=120)
        with self._lock:
            image_id = self._snapshot.image_id(source) if self._snapshot else None
            if self._snapshot is not None and image_id is None:
                self._snapshot = None
            elif self._snapshot is not None and image_id is not None:
                for target in targets:
                    self._snapshot.ids[local_ref(target)] = image_id

    def import_tar(self, tar: Path, ref: str, log_file: Path) -> None:
        self.runner.run([PODMAN, "import", "--quiet", str(tar), ref], log_file=log_file)
        self.refresh(ref)

    def refresh(self, ref: str) -> None:
        """Update the snapshot for one image that was just made.

        Listing every image costs podman tens of milliseconds per image in
        storage; re-listing after each build would make a cold build of N
        images cost O(N²). One `podman image inspect` of the new image keeps
        it O(N).
        """
        with self._lock:
            if self._snapshot is None:
                return
        try:
            out = self.runner.run([PODMAN, "image", "inspect", ref], timeout=120)
            entry = json.loads(out)[0]
        except (CommandFailed, ValueError, IndexError, KeyError):
            self.invalidate()  # not there, or unreadable: the next check lists afresh
            return
        image_id = entry.get("Id", "")
        with self._lock:
            if self._snapshot is None:
                return
            self._snapshot.labels[image_id] = entry.get("Labels") or {}
            for name in [*(entry.get("RepoTags") or []), local_ref(ref)]:
                self._snapshot.ids[name] = image_id

    def remove(self, refs: list[str]) -> None:
        if refs:
            self.runner.run([PODMAN, "rmi", "--ignore", *refs], timeout=300)
            self.invalidate()
