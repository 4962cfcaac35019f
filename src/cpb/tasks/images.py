"""What each kind of task does, and how it knows it is up to date.

Up to date means: the output really exists *and* was made from the current
inputs. For images that is one look at local storage, where the digest tag
and the `io.cpb.resolve.digest` label are the record; stamps under `.cpb/state`
only remember the components of the last build so reasons can be given.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from pathlib import Path

from cpb.adapters.cekit import build_command
from cpb.adapters.podman import DIGEST_LABEL, is_transient, sandbox_hint
from cpb.adapters.rootfs import make_rootfs
from cpb.adapters.runner import CommandFailed
from cpb.errors import BuildError
from cpb.graph import split_task
from cpb.project import Project
from cpb.resolve.render import GENERATED_DIR
from cpb.state import write_bytes_atomic
from cpb.tasks.pods import do_pod, pod_uptodate
from cpb.tasks.push import cache_hit, do_push, pull_instead_of_build, push_uptodate

log = logging.getLogger(__name__)
_image_locks: dict[str, threading.Lock] = {}


# -- up-to-date checks: cheap, read-only, no process started ----------------

def render_uptodate(project: Project, image: str) -> bool:
    path = project.state.render_path(image)
    build = project.images[image]
    try:
        return (path.read_text() == build.descriptor
                and all((path.parent / rel).read_text() == text
                        for rel, text in build.generated.items()))
    except OSError:
        return False


def build_uptodate(project: Project, image: str) -> bool:
    return project.built(image)


def rootfs_uptodate(project: Project, image: str) -> bool:
    build = project.images[image]
    assert build.rootfs_ref is not None
    # The root file system is only an input of this image's build: when that
    # image is already there, making the rootfs again would be wasted work.
    return (project.store.snapshot().image_id(build.rootfs_ref) is not None
            or build_uptodate(project, image)
            or cache_hit(project, image) is not None)


def tag_uptodate(project: Project, image: str) -> bool:
    build = project.images[image]
    snap = project.store.snapshot()
    built = snap.image_id(build.digest_ref)
    return built is not None and snap.image_id(build.version_ref) == built


def fetch_uptodate(project: Project, key: str) -> bool:
    if project.cache.has(key):
        return True
    # Like a root file system, an artifact is only an input of builds: when
    # every image using it is built already, downloading it would be wasted.
    users = [split_task(task)[1] for task in project.graph.successors(f"fetch:{key}")]
    return bool(users) and all(build_uptodate(project, image) for image in users)


UPTODATE: dict[str, Callable[[Project, str], bool]] = {
    "render": render_uptodate, "rootfs": rootfs_uptodate,
    "build": build_uptodate, "tag": tag_uptodate,
    "fetch": fetch_uptodate,
}
UPTODATE["pod"] = pod_uptodate  # pods.py: the running pod carries its digest


# -- actions ------------------------------------------------------------------

def do_render(project: Project, image: str) -> None:
    build = project.images[image]
    path = project.state.render_path(image)
    folder = path.parent / GENERATED_DIR
    # a module generated for an earlier spec (the image had packages) must not linger:
    # cekit reads every module.yaml below the folder it is given
    for old in sorted(folder.glob("*/module.yaml")) if folder.is_dir() else []:
        if old.relative_to(path.parent).as_posix() not in build.generated:
            old.unlink()
    for rel, text in build.generated.items():
        write_bytes_atomic(path.parent / rel, text.encode())
    write_bytes_atomic(path, build.descriptor.encode())
    project.state.write_stamp(f"render:{image}", {"digest": build.digest})


def do_rootfs(project: Project, image: str) -> None:
    build = project.images[image]
    spec = project.spec.images[image]
    assert spec.rootfs is not None and build.rootfs_ref is not None
    task = f"rootfs:{image}"
    log_file = _fresh_log(project, task)
    try:
        make_rootfs(spec.rootfs, build.rootfs_ref, project.state.build_dir(image) / "rootfs",
                    log_file, project.runner, project.store)
    except CommandFailed as exc:
        raise _failed(exc) from None
    project.state.write_stamp(task, {"digest": build.rootfs_digest,
                                     "recipe": build.components["base"]})


def do_build(project: Project, image: str) -> None:
    build = project.images[image]
    task = f"build:{image}"
    if pull_instead_of_build(project, image):
        return
    if build.base_ref is not None and build.components["base"]["id"] is None:
        raise BuildError(f"{task}: base image {build.base_ref} is not in local storage; "
                         "pull or import it first (no registry is reached during a build)")
    with _image_locks.setdefault(image, threading.Lock()):
        log_file = _fresh_log(project, task)
        descriptor = project.state.render_path(image)
        args = build_command(descriptor, project.state.build_dir(image), [build.digest_ref])
        try:
            _run_build(project, args, log_file, task)
        except CommandFailed as exc:
            raise _failed(exc) from None
        finally:
            project.store.refresh(build.digest_ref)
    snap = project.store.snapshot()
    if snap.label(build.digest_ref, DIGEST_LABEL) != build.digest:
        raise BuildError(f"{task}: cekit finished but {build.digest_ref} is not in local "
                         f"storage; see {_shown(project, log_file)}")
    _record_build(project, image)


def _record_build(project: Project, image: str) -> None:
    build = project.images[image]
    project.record_build(image, project.store.snapshot().image_id(build.digest_ref))


def repair_records(project: Project) -> None:
    """Replace damaged records under .cpb/state before a build.

    Local storage is the truth: a damaged build record of an image that is
    there with its digest is written again from the current inputs; any other
    damaged record is removed (it only explained a rebuild).
    """
    for path in sorted(project.state.root.glob("state/*/*.json")):
        try:
            if isinstance(json.loads(path.read_text()), dict):
                continue
        except (OSError, ValueError):
            pass
        kind, name = path.parent.name, path.stem
        path.unlink(missing_ok=True)
        if kind == "build" and name in project.images and build_uptodate(project, name):
            _record_build(project, name)
            log.warning("%s was damaged; written again from local storage", path)
        else:
            log.warning("%s was damaged; removed (the next run of that task writes it)", path)


def do_tag(project: Project, image: str) -> None:
    build = project.images[image]
    project.store.tag(build.digest_ref, build.version_ref)
    project.state.write_stamp(f"tag:{image}", {"digest": build.digest,
                                               "tags": [build.version_ref, build.digest_ref]})


def do_fetch(project: Project, key: str) -> None:
    project.cache.fetch(project.downloads[key])


ACTIONS: dict[str, Callable[[Project, str], None]] = {
    "render": do_render, "rootfs": do_rootfs, "build": do_build, "tag": do_tag,
    "fetch": do_fetch,
}
UPTODATE["push"] = push_uptodate
ACTIONS["push"] = do_push
ACTIONS["pod"] = do_pod


def _run_build(project: Project, args: list[str], log_file: Path, task: str) -> None:
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


def _fresh_log(project: Project, task: str) -> Path:
    path = project.state.log_path(task)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def _shown(project: Project, path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _failed(exc: CommandFailed) -> BuildError:
    """The error doit reports as `FAIL <task>: <message>`."""
    where = f"; log: {exc.log_file}" if exc.log_file else ""
    hint = sandbox_hint(exc.output)
    tail = "\n".join("    " + line for line in exc.tail().splitlines())
    message = f"{exc}{where}"
    if hint:
        message += f"\n  hint: {hint}"
    return BuildError(f"{message}\n  last lines:\n{tail}" if tail else message)

