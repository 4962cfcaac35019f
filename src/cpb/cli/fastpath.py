"""The no-op fast path: `cpb plan` and `cpb build` when nothing changed.

A full `cpb plan` or `cpb build` of every image that finds every task up to
date writes `.cpb/noop.json`: the stat of every file and folder its decision
read (cpb.yaml, each module's folders and files, artifacts, root file system
tars, url artifacts in the cache, rendered descriptors, build records, cpb's
template and code, cekit's installed version), the environment variables cpb reads,
and the image id local storage had under every name it checked.

The next run compares just that: stats (no hashing), and the one listing of
local storage every run makes. It reads no YAML, renders no template, builds
no graph and does not import doit. Anything different, missing or unreadable
falls through to the full run, which decides again (and writes a new record
if it again finds nothing to do).

A file changed while a full run was reading it must not be certified with the
content read before the change: a record is written only when every input's
ctime (which a write always moves forward, and no user call sets back) is
older than the start of that run, less a margin for coarse file-system
clocks. Otherwise the next full run writes it.

Only plain invocations take this path: `cpb [-f FILE] plan [--exit-code]`
and `cpb [-f FILE] build [-j N] [-k|-x] [--progress MODE]`, no image names, no pods for `plan`
(whether a pod is running is not a file). `CPB_NO_FAST_PATH=1` turns it off.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from cpb import __version__
from cpb.adapters.podman import ImageStore
from cpb.adapters.runner import Runner
from cpb.cli.session import interruption, signals_interrupt
from cpb.errors import INTERRUPT_EXITS, CpbError
from cpb.state import (
    STATE_DIR,
    StateDir,
    find_spec_file,
    read_state_text,
    write_bytes_atomic,
    write_error,
)

if TYPE_CHECKING:  # the fast path must not import the pipeline
    from cpb.project import Project

RECORD = "noop.json"
FORMAT = 1
DISABLE_ENV = "CPB_NO_FAST_PATH"
RACY_MARGIN_NS = 2_000_000_000  # coarse file-system clocks: stay well clear


def environment() -> dict[str, str]:
    """The environment variables that change what a full run decides."""
    return {k: v for k, v in os.environ.items()
            if (k.startswith(("CPB_", "CONTAINERS_")) or k in ("HOME", "XDG_CACHE_HOME"))
            and k != DISABLE_ENV}


def _stat(path: str) -> list[int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None  # absence is recorded too: a file that appears is a change
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


# -- writing the record (the full path, after finding nothing to do) -----------

def record(project: Project, started_ns: int, tasks: int) -> bool:
    """Write .cpb/noop.json for a project where all `tasks` were up to date.

    `started_ns` is `time.time_ns()` before the spec was read. Returns False
    (and writes nothing, removing an old record) when an input changed too
    recently to be certain the run saw its current content.
    """
    from cpb.adapters.cekit import cekit_dist_info

    state: StateDir = project.state
    path = state.root / RECORD
    if not state.root.is_dir():
        return False  # a plan in a fresh checkout writes nothing
    cekit = cekit_dist_info()
    if cekit is None:
        # cekit's version came from `cekit --version`: no file tells of an upgrade
        path.unlink(missing_ok=True)
        return False
    files = {p: _stat(p) for p in sorted({cekit, *_inputs(project)})}
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
    write_bytes_atomic(path, json.dumps(data, separators=(",", ":")).encode())
    return True


def forget(project_root: Path) -> None:
    """Remove the record (a run that found work, or failed)."""
    path = project_root / STATE_DIR / RECORD
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:
        raise write_error(path, exc) from None


def _inputs(project: Project) -> Iterable[str]:
    """Every file and folder whose stat stands for what the run read (cekit's
    metadata folder aside: record() adds it)."""
    from cpb.resolve.render import GENERATED_DIR, MODULE_TEMPLATE, TEMPLATE
    from cpb.resources import builtin_modules_dir, templates_dir
    from cpb.spec.modules import PROJECT_MODULES

    spec = project.spec
    yield str(spec.file)
    yield str(spec.root / PROJECT_MODULES)  # a new module folder may shadow a built-in one
    yield str(builtin_modules_dir())
    yield str(templates_dir() / TEMPLATE)
    yield str(templates_dir() / MODULE_TEMPLATE)
    # cpb's own code decides digests too (an editable install changes without
    # a new version number)
    yield from (str(p) for p in sorted(Path(__file__).parents[1].rglob("*.py")))
    # and the runtime's code goes into images as a wheel (cpb.resolve.runtime)
    if any(a.made_by for image in spec.images.values() for a in image.artifacts):
        from cpb.resolve.runtime import runtime_folder, runtime_sources

        yield str(runtime_folder())  # a file added or removed
        yield from (str(p) for p in runtime_sources())
    for name, image in spec.images.items():
        render = project.state.render_path(name)
        yield str(render)
        # the generated modules, and their folder: an entry added there is a change
        generated = project.images[name].generated
        yield from (str(render.parent / rel) for rel in generated)
        yield from (str(render.parent / rel.rsplit("/", 1)[0]) for rel in generated)
        yield str(render.parent / GENERATED_DIR)
        if image.rootfs is not None and image.rootfs.tar is not None:
            yield str(image.rootfs.tar)
        for artifact in image.artifacts:
            yield str(artifact.path if artifact.path is not None
                      else project.cache.path(artifact.key))
        for module in image.modules:
            yield str(module.path)
            yield from module.folders
            yield from (str(f.path) for f in module.files)
    state_dir = project.state.root / "state"
    yield str(state_dir)
    if state_dir.is_dir():
        for kind in sorted(state_dir.iterdir()):
            yield str(kind)
            yield from (str(p) for p in sorted(kind.glob("*.json")))


# -- reading it (before anything else is imported) -------------------------------

def _parse(argv: Sequence[str]) -> tuple[Path | None, str, bool] | None:
    """(spec file or None, command, plan's --exit-code) for a plain plan/build."""
    args = list(argv)
    spec: Path | None = None
    while args and args[0].startswith("-"):
        option = args.pop(0)
        if option in ("-f", "--file") and args:
            spec = Path(args.pop(0))
        elif option.startswith("--file="):
            spec = Path(option.split("=", 1)[1])
        else:
            return None
    if not args or args[0] not in ("plan", "build"):
        return None
    command, rest = args[0], args[1:]
    exit_code = False
    while rest:
        option = rest.pop(0)
        if command == "plan" and option == "--exit-code":
            exit_code = True
        elif command == "build" and option in ("-k", "-x", "--keep-going", "--fail-fast"):
            pass
        elif command == "build" and option in ("-j", "--jobs") and rest and rest[0].isdigit():
            rest.pop(0)
        elif command == "build" and option == "--progress" and rest \
                and rest[0] in ("auto", "tty", "plain"):
            rest.pop(0)  # a no-op shows the same line in every mode
        elif command == "build" and (option.startswith("--jobs=") or
                                     (option.startswith("-j") and option[2:].isdigit()) or
                                     option in ("--progress=auto", "--progress=tty",
                                                "--progress=plain")):
            pass
        else:
            return None  # image names, --json, --all, --push...: the full path
    return spec, command, exit_code


def unchanged(record_file: Path, spec: Path, command: str) -> int | None:
    """The number of tasks, all up to date, if nothing changed since the record."""
    try:
        data = json.loads(read_state_text(record_file))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        return None
    if (data.get("cpb") != __version__ or data.get("spec") != str(spec)
            or data.get("environment") != environment()
            or (command == "plan" and data.get("pods"))):
        return None
    files, images = data.get("files"), data.get("images")
    if not isinstance(files, dict) or not isinstance(images, dict):
        return None
    for path, stat in files.items():
        if _stat(path) != stat:
            return None
    store = ImageStore(Runner())
    if store.lister != data.get("lister"):
        return None
    snap = store.snapshot()
    if any(snap.image_id(ref) != image_id for ref, image_id in images.items()):
        return None
    tasks = data.get("tasks")
    return tasks if isinstance(tasks, int) else None


def fast_path(argv: Sequence[str]) -> int | None:
    """Exit code of a no-op plan/build answered from the record; None: run in full."""
    if os.environ.get(DISABLE_ENV, "") not in ("", "0"):
        return None
    parsed = _parse(argv)
    if parsed is None:
        return None
    spec, command, _ = parsed
    try:
        spec = (spec or find_spec_file(Path.cwd())).resolve()  # SpecError: full path
        state = StateDir(spec.parent)
        record_file = state.root / RECORD
        if not record_file.is_file():
            return None
        if command == "plan":
            tasks = unchanged(record_file, spec, command)
            if tasks is None:
                return None
            print(f"nothing to do: all {tasks} tasks up to date")
            return 0
        # A build holds the project lock while it looks, as the full path does;
        # if another run has it, the full path waits for it and says so.
        # A dead run's leftovers are ended here too, and said so.
        with state.lock(wait=False, on_ended=lambda text: print(text, file=sys.stderr)):
            tasks = unchanged(record_file, spec, command)
            if tasks is None:
                return None
            print(f"0 done, {tasks} up to date")
            return 0
    except (CpbError, OSError, ValueError):
        return None


def main(argv: Sequence[str] | None = None) -> int:
    """The `cpb` command: the fast path when it applies, else the full CLI."""
    args = sys.argv[1:] if argv is None else list(argv)
    started = time.time_ns()
    with signals_interrupt():
        try:
            code = fast_path(args)
        except KeyboardInterrupt as exc:
            code, message = interruption(exc)
            print(message, file=sys.stderr)
            return code
        if code is not None:
            return code
        from cpb.cli.app import main as full_main

        return full_main(args, started_ns=started)


def exit_with(code: int) -> NoReturn:
    if code in INTERRUPT_EXITS:
        # doit's worker threads may still wait for work that will never come;
        # everything is on disk, so do not wait for them.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


def entry() -> None:
    """The console script `cpb` and `python -m cpb`."""
    exit_with(main())
