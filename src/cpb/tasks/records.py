"""Build records under `.cpb/state/build/`, and whether an image is built.

Local storage is the truth about images: an image is built when its digest
tag `cpb-<digest12>` is there. An image under that tag that cpb did not
record making (another checkout, a CI runner sharing storage, a hand-made
tag) must also carry the full digest as its digest label; those labels are
read once per listing, in one `podman image inspect`.

Checking never writes: `record_found` (a step of every build, see
cpb.workflow) writes the records of such images, and each task writes its
own record when it succeeds.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import TYPE_CHECKING

from cpb.adapters.podman import Snapshot
from cpb.naming import BUILD, DIGEST_LABEL, split_task, task_name
from cpb.resolve.memo import save_memo
from cpb.state import read_state_text

if TYPE_CHECKING:
    from cpb.project import Project

log = logging.getLogger(__name__)
_checking = threading.Lock()


def image_built(project: Project, image: str) -> bool:
    """`image` is in local storage, made from its current inputs."""
    build = project.images[image]
    snap = project.store.snapshot()
    if snap.image_id(build.digest_ref) is None:
        return False
    _unverified(project, snap)
    return snap.holds(build.digest_ref, DIGEST_LABEL, build.digest)


def only_inputs_of_built_images(project: Project, task: str) -> bool:
    """Every image whose build needs `task` (a download, the runtime's wheel) is
    built already: making that input now would be wasted work."""
    users = [split_task(needed_by)[1] for needed_by in project.graph.successors(task)]
    return bool(users) and all(image_built(project, image) for image in users)


def _unrecorded(project: Project, snap: Snapshot) -> dict[str, str]:
    """Images under their digest tag that no record of this project accounts for."""
    unknown: dict[str, str] = {}
    for name, build in project.images.items():
        image_id = snap.image_id(build.digest_ref)
        if image_id is None or image_id in snap.labels:
            continue
        stamp = project.state.read_stamp(task_name(BUILD, name)) or {}
        if stamp.get("image_id") != image_id or stamp.get("digest") != build.digest:
            unknown[name] = image_id
    return unknown


def _unverified(project: Project, snap: Snapshot) -> dict[str, str]:
    """The unrecorded images of this listing, their labels read (once per listing)."""
    with _checking:
        if snap.unverified is None:
            unknown = _unrecorded(project, snap)
            if unknown:
                project.store.labels_of(list(unknown.values()))  # kept in the snapshot
            snap.unverified = unknown
        return snap.unverified


def record_build(project: Project, image: str, image_id: str | None, **extra: str) -> None:
    """The build record: what made the image under the digest tag."""
    build = project.images[image]
    project.state.write_stamp(task_name(BUILD, image), {
        "digest": build.digest, "components": build.components, "image_id": image_id,
        **extra})


def record_current(project: Project, image: str) -> None:
    """Record the image local storage now has under `image`'s digest tag."""
    build = project.images[image]
    record_build(project, image, project.store.snapshot().image_id(build.digest_ref))


def record_found(project: Project) -> None:
    """Write the records of images found built that no record accounts for, and
    the hashes of the files read (so the next run need not hash them again)."""
    project.hashes.save()
    project.renders.save()
    save_memo(project.spec.root, project.spec.memo)
    for name in sorted(_unverified(project, project.store.snapshot())):
        if image_built(project, name):
            record_current(project, name)


def repair_records(project: Project) -> None:
    """Replace damaged records under .cpb/state before a build.

    Local storage is the truth: a damaged build record of an image that is
    there with its digest is written again from the current inputs; any other
    damaged record is removed (it only explained a rebuild).
    """
    for path in sorted(project.state.root.glob("state/*/*.json")):
        try:
            if isinstance(json.loads(read_state_text(path)), dict):
                continue
        except (OSError, ValueError):
            pass
        kind, name = path.parent.name, path.stem
        path.unlink(missing_ok=True)
        if kind == BUILD and name in project.images and image_built(project, name):
            record_current(project, name)
            log.warning("%s was damaged; written again from local storage", path)
        else:
            log.warning("%s was damaged; removed (the next run of that task writes it)", path)
