"""Writing the no-op record: after a full run of every image found nothing to do."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from cpb import __version__
from cpb.adapters.cekit import cekit_dist_info
from cpb.noop.record import FORMAT, RECORD, environment, stat_of
from cpb.resolve.memo import save_memo
from cpb.resolve.render import GENERATED_DIR, MODULE_TEMPLATE, TEMPLATE
from cpb.resources import builtin_modules_dir, templates_dir
from cpb.spec.modules import PROJECT_MODULES
from cpb.state import DESCRIPTOR, RACY_MARGIN_NS, StateDir, write_bytes_atomic

if TYPE_CHECKING:
    from cpb.project import Project


def write(project: Project, started_ns: int, tasks: int) -> bool:
    """Write .cpb/noop.json for a project where all `tasks` were up to date.

    `started_ns` is `time.time_ns()` before the spec was read. Returns False
    (and writes nothing, removing an old record) when an input changed too
    recently to be certain the run saw its current content.
    """
    state: StateDir = project.state
    path = state.root / RECORD
    if not state.root.is_dir():
        return False  # a plan in a fresh checkout writes nothing
    cekit = cekit_dist_info()
    if cekit is None:
        # cekit's version came from `cekit --version`: no file tells of an upgrade
        path.unlink(missing_ok=True)
        return False
    # A file hashed by this run is recorded with the stat its hash stands for
    # (taken before it was read: a change since is a change to the next run).
    hashed = project.hashes.files_read()
    files = {p: hashed[p] if p in hashed else stat_of(p)
             for p in sorted({cekit, *hashed, *_inputs(project)})}
    limit = started_ns - RACY_MARGIN_NS
    if any(st is not None and st[2] >= limit for st in files.values()):
        path.unlink(missing_ok=True)
        return False
    snap = project.store.snapshot()
    images: dict[str, str | None] = {}
    for build in project.images.values():
        for ref in (build.digest_ref, build.version_ref, build.base_ref):
            if ref is not None:
                images[ref] = snap.image_id(ref)
    data = {"format": FORMAT, "cpb": __version__, "spec": str(project.spec.file),
            "environment": environment(), "lister": project.store.lister,
            "pods": bool(project.spec.pods), "tasks": tasks, "files": files, "images": images}
    # compact: thousands of entries, written and read by machines only
    write_bytes_atomic(path, json.dumps(data, separators=(",", ":"),
                                        check_circular=False).encode())
    save_memo(project.spec.root, project.spec.memo)  # for the next full run
    project.renders.save()
    return True


def _inputs(project: Project) -> Iterable[str]:
    """Every file and folder whose stat stands for what the run read (cekit's
    metadata folder aside: `write` adds it), in no order: `write` sorts them.

    The files resolve hashed (module files, local artifacts, root file system
    tars) come from the hasher that read them (`write`), not from a list here.
    Paths are strings, joined by hand: there are thousands (several per image),
    and pathlib would cost more than their stats.
    """
    spec = project.spec
    yield str(spec.file)
    yield str(spec.root / PROJECT_MODULES)  # a new module folder may shadow a built-in one
    yield str(builtin_modules_dir())
    yield str(templates_dir() / TEMPLATE)
    yield str(templates_dir() / MODULE_TEMPLATE)
    # cpb's own code decides digests too (an editable install changes without
    # a new version number)
    yield from _python_files(os.path.dirname(os.path.dirname(__file__)))
    # and the runtime's code goes into images as a wheel (cpb.resolve.runtime)
    if any(a.made_by for image in spec.images.values() for a in image.artifacts):
        from cpb.resolve.runtime import runtime_folder, runtime_sources

        yield str(runtime_folder())  # a file added or removed
        yield from (str(p) for p in runtime_sources())
    yield from (str(project.cache.path(key)) for key in project.downloads)
    for name, image in spec.images.items():
        render = project.state.render_dir(name)
        yield f"{render}/{DESCRIPTOR}"
        # the generated modules, and their folder: an entry added there is a change
        for rel in project.images[name].generated:
            yield f"{render}/{rel}"
            yield f"{render}/{rel.rsplit('/', 1)[0]}"
        yield f"{render}/{GENERATED_DIR}"
        for module in image.modules:  # a file added to a module's folder is a change
            yield str(module.path)
            yield from module.folders
    yield from _records(str(project.state.root / "state"))


def _python_files(top: str) -> Iterator[str]:
    """What `Path(top).rglob("*.py")` finds (links to folders not entered), as strings."""
    for folder, folders, files in os.walk(top):
        yield from (f"{folder}/{name}" for name in (*folders, *files) if name.endswith(".py"))


def _records(state_dir: str) -> Iterator[str]:
    """The folder of the task records, each entry in it and the *.json files in those
    that are folders (a record added or removed is a change)."""
    yield state_dir
    try:
        with os.scandir(state_dir) as listing:
            kinds = list(listing)
    except (FileNotFoundError, NotADirectoryError):
        return  # no records yet: their absence is recorded
    for kind in kinds:
        yield kind.path
        if kind.is_dir():
            try:
                with os.scandir(kind.path) as records:
                    yield from (r.path for r in records if r.name.endswith(".json"))
            except PermissionError:
                pass  # as pathlib's glob
