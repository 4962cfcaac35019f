"""Podman adapter: what local storage holds, and the few changes cpb makes to it.

`ImageStore.snapshot` lists local storage once; all up-to-date checks read
that one answer, so a no-op run starts one process no matter how many images
the project has.

The listing comes from `buildah images --json` when buildah is installed: it
reads the same storage as podman but does not work out each image's parent
and size the way `podman images` does (0.1 s against 4 s for 500 images,
and podman's cost grows faster than linearly). It carries names but not
labels, so for a listed image the content-addressed tag
`<image>:cpb-<digest12>` is the record that it was built from those inputs;
the digest label (`cpb.naming.DIGEST_LABEL`) is read (one `podman image inspect`) where cpb
needs certainty: right after a build or a pull. Without buildah, cpb lists
with `podman images`, labels included.

A podman killed while it commits an image (a crash, kill -9, an OOM kill)
can leave an image whose files were never written; from then on every
`podman images` and `buildah images` fails ("consider removing the
image"). Such an image cannot be used or repaired, so the listing removes it
(`podman rmi`, never --force: a container using it stays, and the error
says so) and says which one it removed.
"""

from __future__ import annotations

import json
import logging
import random
import re
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from cpb.adapters.runner import CommandFailed, Runner
from cpb.errors import EnvironmentProblem

PODMAN = "podman"
BUILDAH = "buildah"
# Podman's local short names: `foo/bar:1` is stored as `localhost/foo/bar:1`.
LOCAL_PREFIX = "localhost/"

SANDBOX_HINT = ("podman cannot start containers here (a sandbox that forbids raising rlimits); "
                "point CONTAINERS_CONF at a containers.conf with [containers] default_ulimits = "
                "[\"nofile=1024:1024\", \"nproc=4096:4096\"] and [engine] runtime = \"runc\" "
                "(cpb's repository has one: .ci/containers.conf)")
_SANDBOX_SIGNS = ("setrlimit", "error setting rlimit", "cgroups in hybrid mode")
_QUERY_ATTEMPTS = 8  # ~20 s of retrying: busy shared storage (CI) races often
_TRANSIENT_SIGNS = ("image not known", "no such image", "layer not known")
# containers/storage's words for an image whose files are missing
_BROKEN_IMAGE = re.compile(r'for image with ID "([0-9a-f]{64})" \(consider removing the image')
_REPAIRS = 10  # broken images removed by one listing at most
log = logging.getLogger(__name__)


def local_ref(ref: str) -> str:
    first = ref.split("/", 1)[0]
    if "/" in ref and ("." in first or ":" in first or first == "localhost"):
        return ref
    return LOCAL_PREFIX + ref


def is_transient(output: str) -> bool:
    return any(sign in output for sign in _TRANSIENT_SIGNS)


def sandbox_hint(output: str) -> str:
    return SANDBOX_HINT if any(sign in output for sign in _SANDBOX_SIGNS) else ""


FULL_HINT = ("no space left on device: podman's storage (`podman info --format "
             "'{{.Store.GraphRoot}}'`) or the build's temporary folder is full; free space "
             "(`podman image prune`) and build again")


def full_storage_hint(output: str) -> str:
    """A build step (or podman committing its layer) ran out of space."""
    return FULL_HINT if "no space left on device" in output.lower() else ""


@dataclass
class Snapshot:
    ids: dict[str, str] = field(default_factory=dict)  # full reference -> image id
    # image id -> labels, for the images whose labels were read (podman's
    # listing, or an inspect after a build); buildah's listing has none.
    labels: dict[str, dict[str, str]] = field(default_factory=dict)
    # Listed images no build record accounts for, by image name, once their
    # labels were read (see cpb.tasks.records); None: not looked at yet.
    unverified: dict[str, str] | None = None

    def image_id(self, ref: str) -> str | None:
        return self.ids.get(local_ref(ref))

    def label(self, ref: str, key: str) -> str | None:
        """The label's value; None if the image is not there or its labels were not read."""
        image_id = self.image_id(ref)
        return None if image_id is None else self.labels.get(image_id, {}).get(key)

    def holds(self, ref: str, key: str, value: str) -> bool:
        """`ref` names an image whose label `key` is `value`.

        For `ref` = `<image>:cpb-<digest12>` the name itself says which inputs
        made the image, so an image whose labels were not read counts by its
        name; one whose labels were read must also carry the label.
        """
        image_id = self.image_id(ref)
        if image_id is None:
            return False
        labels = self.labels.get(image_id)
        return labels is None or labels.get(key) == value


class ImageStore:
    def __init__(self, runner: Runner, lister: str | None = None) -> None:
        self.runner = runner
        # buildah when installed (see the module's docstring), else podman.
        self.lister = lister or (BUILDAH if shutil.which(BUILDAH) else PODMAN)
        self._snapshot: Snapshot | None = None
        self._listed = False  # a listing was made or started (list_in_background)
        self._lock = threading.Lock()
        self._import_lock = threading.Lock()

    def snapshot(self) -> Snapshot:
        with self._lock:
            if self._snapshot is None:
                self._listed = True
                self._snapshot = self._query()
            return self._snapshot

    def list_in_background(self) -> None:
        """Start the listing now, in a thread, so that it runs while the caller
        computes (the listing is a process: it waits on its own core).
        `snapshot()` waits for it; a listing that failed is made again there,
        where its error is raised."""
        threading.Thread(target=self._list_quietly, name="cpb-storage-listing",
                         daemon=True).start()

    def _list_quietly(self) -> None:
        with self._lock:
            if self._listed:  # the caller was first (and may have invalidated it since)
                return
            self._listed = True
            try:
                self._snapshot = self._query()
            except Exception:  # noqa: BLE001 - snapshot() lists again and raises it
                log.debug("background listing of local storage failed", exc_info=True)

    def invalidate(self) -> None:
        with self._lock:
            self._snapshot = None

    def _query(self) -> Snapshot:
        if self.lister == BUILDAH:
            args = [BUILDAH, "images", "--json", "--no-trunc"]
        else:
            args = [PODMAN, "images", "--format", "json"]
        attempt, seen_broken, removed = 0, "", 0
        while True:
            try:
                out = self.runner.run(args, timeout=300)
                break
            except CommandFailed as exc:
                broken = _BROKEN_IMAGE.search(exc.output)
                if broken and removed < _REPAIRS:
                    # Another podman may be committing this very image: only an
                    # image still without its files a moment later is broken.
                    if broken[1] == seen_broken:
                        self._remove_broken(broken[1])
                        removed += 1
                    else:
                        time.sleep(1)
                    seen_broken = broken[1]
                    continue
                # Listing races with another process removing images from the
                # same storage ("image not known"); the next listing is fine.
                attempt += 1
                if attempt == _QUERY_ATTEMPTS or not is_transient(exc.output):
                    raise EnvironmentProblem(f"`{args[0]} images` failed: "
                                             + (exc.tail(3) or str(exc))) from None
                time.sleep(0.5 * attempt + random.random())  # noqa: S311 - jitter only
        try:
            entries = json.loads(out or "[]") or []
        except ValueError:
            raise EnvironmentProblem(f"`{args[0]} images` printed something that is not "
                                     f"JSON: {out[:200]!r}") from None
        snap = Snapshot()
        for entry in entries:
            if self.lister == BUILDAH:
                image_id, names = _bare_id(entry.get("id", "")), entry.get("names")
            else:
                image_id, names = entry.get("Id", ""), entry.get("Names")
                snap.labels[image_id] = entry.get("Labels") or {}
            for name in names or []:
                snap.ids[name] = image_id
        return snap

    def _remove_broken(self, image_id: str) -> None:
        try:
            self.runner.run([PODMAN, "rmi", image_id], timeout=120)
        except CommandFailed as exc:
            raise EnvironmentProblem(
                f"podman's storage holds image {image_id[:12]} whose files are missing (an "
                f"interrupted build leaves such an image), and `podman rmi {image_id[:12]}` "
                f"failed: {exc.tail(1) or exc}") from None
        log.warning("removed image %s from podman's storage: its files were missing (an "
                    "interrupted build leaves such an image) and every image listing failed "
                    "on it", image_id[:12])

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
        """`podman import` the tar as `ref`.

        Importing the same tar gives the same image id; two such imports at
        once (two bases from one busybox tar, built in parallel) race in
        podman and one name can be lost. Ours are serialised, and a name lost
        to another process's import is added by importing once more.
        """
        with self._import_lock:
            for _ in range(2):
                self.runner.run([PODMAN, "import", "--quiet", str(tar), ref], log_file=log_file)
                self.refresh(ref)
                if self.snapshot().image_id(ref) is not None:
                    return
        raise EnvironmentProblem(f"`podman import` of {tar} finished but {ref} is not in "
                                 f"local storage; log: {log_file}")

    def refresh(self, ref: str) -> None:
        """Update the snapshot for one image that was just made, labels included.

        Re-listing all of storage after each build would make a cold build of
        N images cost O(N²); one `podman image inspect` of the new image keeps
        it O(N), and reads the labels a listing by buildah does not have.
        """
        self.snapshot()
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

    def labels_of(self, image_ids: list[str]) -> dict[str, dict[str, str]]:
        """Labels of these images: those not read yet with one `podman image inspect`."""
        snap = self.snapshot()
        unknown = sorted({i for i in image_ids if i and i not in snap.labels})
        if unknown:
            try:
                entries = json.loads(self.runner.run([PODMAN, "image", "inspect", *unknown],
                                                     timeout=120) or "[]")
            except (CommandFailed, ValueError):
                entries = []  # one was removed meanwhile, or podman failed
            with self._lock:
                for image_id in unknown:
                    # not read: no labels, so no digest label to trust it by
                    snap.labels[image_id] = {}
                for entry in entries:
                    snap.labels[entry.get("Id", "")] = entry.get("Labels") or {}
        return {i: snap.labels.get(i, {}) for i in image_ids}

    def remove(self, refs: list[str]) -> None:
        if refs:
            self.runner.run([PODMAN, "rmi", "--ignore", *refs], timeout=300)
            self.invalidate()


def _bare_id(image_id: str) -> str:
    """buildah's `sha256:<hex>` as podman's `<hex>`."""
    return image_id.split(":", 1)[1] if image_id.startswith("sha256:") else image_id
