"""The image task kinds: `rootfs:`, `render:`, `build:` and `tag:` of each image.

Up to date means: the output really exists *and* was made from the current
inputs. For images that is one look at local storage, where the digest tag
and the digest label are the record; stamps under `.cpb/state` only
remember the components of the last build so reasons can be given.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from cpb.adapters.cekit import build_command
from cpb.adapters.podman import is_transient
from cpb.adapters.rootfs import make_rootfs
from cpb.adapters.runner import CommandFailed
from cpb.errors import BuildError
from cpb.naming import BUILD, DIGEST_LABEL, FETCH, RENDER, ROOTFS, TAG, WHEEL, task_name
from cpb.resolve.render import GENERATED_DIR
from cpb.state import (
    DESCRIPTOR,
    fresh_folder,
    read_state_text,
    remove_entry,
    state_folder,
    write_bytes_atomic,
)
from cpb.tasks.changes import build_reasons
from cpb.tasks.common import fresh_log, shown, task_failed
from cpb.tasks.kind import Node, TaskKind
from cpb.tasks.records import image_built, record_current
from cpb.tasks.regcache import cache_hit, cache_reasons, pull_instead_of_build

if TYPE_CHECKING:
    from cpb.project import Project
    from cpb.spec.model import ProjectSpec

log = logging.getLogger(__name__)
_image_locks: dict[str, threading.Lock] = {}


# -- up-to-date checks: cheap, read-only, no process started ----------------

def render_uptodate(project: Project, image: str) -> bool:
    # Reading the files back is the check that they are what cpb wrote. An identity
    # (size, mtime, ctime, inode) recorded by the render would be taken within a clock
    # tick of the write, so an edit of the same size right after it could keep all of
    # it: such a record could never be trusted (see RACY_MARGIN_NS). Strings and
    # DirEntry objects, not pathlib: a plan runs this for every image.
    folder = project.state.render_dir(image)
    build = project.images[image]
    try:
        return (read_state_text(f"{folder}/{DESCRIPTOR}") == build.descriptor
                and _generated_folders(f"{folder}/{GENERATED_DIR}") == {
                    rel.split("/")[1] for rel in build.generated}
                and all(read_state_text(f"{folder}/{rel}") == text
                        for rel, text in build.generated.items()))
    except OSError:
        return False


def _generated_folders(folder: str) -> set[str] | None:
    """The module folders cekit would find below `folder`, or None when anything else is
    there: cekit loads every module.yaml below it, and a project may ship a .cpb/."""
    try:
        with os.scandir(folder) as listing:
            entries = list(listing)
    except FileNotFoundError:
        return set()
    if not all(_only_module_yaml(entry) for entry in entries):
        return None
    return {entry.name for entry in entries}


def rootfs_uptodate(project: Project, image: str) -> bool:
    build = project.images[image]
    assert build.rootfs_ref is not None
    # The root file system is only an input of this image's build: when that
    # image is already there, making the rootfs again would be wasted work.
    return (project.store.snapshot().image_id(build.rootfs_ref) is not None
            or image_built(project, image)
            or cache_hit(project, image) is not None)


def tag_uptodate(project: Project, image: str) -> bool:
    build = project.images[image]
    snap = project.store.snapshot()
    built = snap.image_id(build.digest_ref)
    return built is not None and snap.image_id(build.version_ref) == built


# -- actions ------------------------------------------------------------------

def do_render(project: Project, image: str) -> None:
    build = project.images[image]
    path = project.state.render_path(image)
    # Only the modules generated for this spec stay where cekit looks for modules (one of
    # an earlier spec, or anything a shipped .cpb/ holds, is removed, links not followed).
    folder = state_folder(path.parent / GENERATED_DIR)
    wanted = {rel.split("/")[1] for rel in build.generated}
    with os.scandir(folder) as listing:
        entries = sorted(listing, key=lambda entry: entry.name)
    for entry in entries:
        if entry.name not in wanted or not _only_module_yaml(entry):
            remove_entry(folder / entry.name)
    for rel, text in build.generated.items():
        write_bytes_atomic(path.parent / rel, text.encode())
    write_bytes_atomic(path, build.descriptor.encode())
    project.state.write_stamp(task_name(RENDER, image), {"digest": build.digest})


def _only_module_yaml(folder: os.DirEntry[str]) -> bool:
    """A real folder holding one real file, module.yaml (nothing a link or another module)."""
    if not folder.is_dir(follow_symlinks=False):
        return False
    with os.scandir(folder.path) as listing:
        return [(e.name, e.is_file(follow_symlinks=False)) for e in listing] == [
            ("module.yaml", True)]


def do_rootfs(project: Project, image: str) -> None:
    build = project.images[image]
    spec = project.spec.images[image]
    assert spec.rootfs is not None and build.rootfs_ref is not None
    task = task_name(ROOTFS, image)
    log_file = fresh_log(project.state, task)
    try:
        make_rootfs(spec.rootfs, build.rootfs_ref,
                    fresh_folder(project.state.build_dir(image) / "rootfs"),
                    log_file, project.runner, project.store)
    except CommandFailed as exc:
        raise task_failed(exc) from None
    project.state.write_stamp(task, {"digest": build.rootfs_digest,
                                     "recipe": build.components["base"]})


def do_build(project: Project, image: str) -> None:
    build = project.images[image]
    task = task_name(BUILD, image)
    if pull_instead_of_build(project, image):
        return
    if build.base_ref is not None and build.components["base"]["id"] is None:
        raise BuildError(f"base image {build.base_ref} is not in local storage; "
                         "pull or import it first (no registry is reached during a build)")
    with _image_locks.setdefault(image, threading.Lock()):
        log_file = fresh_log(project.state, task)
        descriptor = project.state.render_path(image)
        # made afresh: cekit writes into work/ and target/, which a shipped .cpb/ could link
        build_dir = fresh_folder(project.state.build_dir(image))
        args = build_command(descriptor, build_dir, [build.digest_ref])
        try:
            run_build(project, args, log_file, task)
        except CommandFailed as exc:
            raise task_failed(exc) from None
        finally:
            project.store.refresh(build.digest_ref)
    snap = project.store.snapshot()
    if snap.label(build.digest_ref, DIGEST_LABEL) != build.digest:
        raise BuildError(f"cekit finished but {build.digest_ref} is not in local "
                         f"storage; see {shown(log_file)}")
    record_current(project, image)


def do_tag(project: Project, image: str) -> None:
    build = project.images[image]
    project.store.tag(build.digest_ref, build.version_ref)
    project.state.write_stamp(task_name(TAG, image), {
        "digest": build.digest, "tags": [build.version_ref, build.digest_ref]})


def run_build(project: Project, args: list[str], log_file: Path, task: str) -> None:
    """Run cekit; once more if podman lost a race with another process on its storage.

    `podman build` checks its layer cache while another process (a second
    project, `podman rmi`) may be removing layers: "layer not known". The
    build itself was fine; a second attempt is.
    """
    try:
        project.runner.run(args, log_file=log_file)
    except CommandFailed as exc:
        if not is_transient(exc.output):
            raise
        log.warning("%s: podman storage changed under the build (%s); trying once more",
                    task, "another process removed images")
        project.store.invalidate()
        project.runner.run(args, log_file=log_file)


# -- plan reasons ----------------------------------------------------------------

def render_reasons(project: Project, image: str, pending: set[str]) -> list[str]:
    exists = project.state.render_path(image).exists()
    return ["rendered descriptor is out of date" if exists else "descriptor not rendered yet"]


def rootfs_reasons(project: Project, image: str, pending: set[str]) -> list[str]:
    return [f"root file system image {project.images[image].rootfs_ref} is not in local storage"]


def image_build_reasons(project: Project, image: str, pending: set[str]) -> list[str]:
    return cache_reasons(project, image) or build_reasons(project, image, pending)


def tag_reasons(project: Project, image: str, pending: set[str]) -> list[str]:
    build = project.images[image]
    if task_name(BUILD, image) in pending:
        return [f"image {image} will be {'pulled' if cache_hit(project, image) else 'built'}"]
    return [f"tag {build.version_ref} does not point at {build.digest_ref}"]


# -- the kinds -------------------------------------------------------------------

def _rootfs_nodes(spec: ProjectSpec) -> Iterator[Node]:
    return (Node(name) for name, image in spec.images.items() if image.rootfs is not None)


def _render_nodes(spec: ProjectSpec) -> Iterator[Node]:
    return (Node(name) for name in spec.images)


def _build_nodes(spec: ProjectSpec) -> Iterator[Node]:
    for name, image in spec.images.items():
        needs = [task_name(RENDER, name)]
        if image.rootfs is not None:
            needs.append(task_name(ROOTFS, name))
        if image.parent is not None:
            needs.append(task_name(BUILD, image.parent))
        # one fetch: task per distinct artifact, shared by every image using it
        needs += [task_name(FETCH, a.key) for a in image.artifacts if a.url is not None]
        needs += [task_name(WHEEL, a.made_by) for a in image.artifacts if a.made_by]
        yield Node(name, tuple(dict.fromkeys(needs)))


def _tag_nodes(spec: ProjectSpec) -> Iterator[Node]:
    return (Node(name, (task_name(BUILD, name),)) for name in spec.images)


ROOTFS_KIND = TaskKind(ROOTFS, "image", _rootfs_nodes, rootfs_uptodate, do_rootfs,
                       rootfs_reasons)
RENDER_KIND = TaskKind(RENDER, "image", _render_nodes, render_uptodate, do_render,
                       render_reasons)
BUILD_KIND = TaskKind(BUILD, "image", _build_nodes, image_built, do_build,
                      image_build_reasons)
TAG_KIND = TaskKind(TAG, "image", _tag_nodes, tag_uptodate, do_tag, tag_reasons)
