"""The `cpb` command line: parse options, call the library, report errors.

Every `CpbError` becomes one line on stderr and its documented exit code;
nothing else reaches the user as a traceback except a genuine bug.
"""

from __future__ import annotations

import json
import logging
import re
import shlex
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import click

from cpb import __version__
from cpb.cli import complete
from cpb.cli.clean import clean
from cpb.cli.display import progress_option
from cpb.cli.options import (
    Options,
    build_options,
    global_options,
    jobs_option,
    keep_going_option,
    make_runner,
    plan_options,
)
from cpb.cli.pki import pki
from cpb.cli.pods import down, kube, pod_targets, status, up
from cpb.cli.process import exit_with, tune_collector
from cpb.cli.session import interruption, signals_interrupt
from cpb.cli.submit import submit
from cpb.errors import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_SPEC,
    CpbError,
    EnvironmentProblem,
    SpecError,
)
from cpb.naming import FETCH, POD, PUSH, TAG, split_task, task_name
from cpb.state import SPEC_FILE, find_spec_file, write_bytes_atomic
from cpb.util import did_you_mean

if TYPE_CHECKING:
    from collections.abc import Iterator

    from cpb.adapters.artifacts import ArtifactCache, Download, FetchError, FetchResult, Progress
    from cpb.project import Project
    from cpb.tasks.plan import PlannedTask
    from cpb.workflow import Opening

# `cpb --version` and `cpb --help` import only the modules above: the
# pipeline (jinja2, networkx, doit) is imported by the commands that use it.

log = logging.getLogger("cpb")
_started_ns = 0  # when this command started: see main() and cpb.noop.write
_argv: list[str] = []  # this command's arguments, recorded with the tasks it runs


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="cpb")
@global_options
@click.pass_context
def cli(ctx: click.Context, spec_file: Path | None, verbose: bool, cache_dir: Path | None,
        offline: bool, allow_host_paths: tuple[str, ...]) -> None:
    """Build and start ComputePods from one cpb.yaml, rebuilding only what changed."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING,
                        format="cpb: %(levelname)s: %(message)s", stream=sys.stderr)
    ctx.obj = Options(spec_file, cache_dir, offline, allow_host_paths)


@cli.command()
@click.argument("directory", type=click.Path(path_type=Path, file_okay=False))
def init(directory: Path) -> None:
    """Create a starter project in DIRECTORY: cpb.yaml, modules/, dodo.py."""
    from cpb.resources import templates_dir

    source = templates_dir() / "init"
    if directory.exists() and any(directory.iterdir()):
        raise SpecError(f"{directory} exists and is not empty; choose a new folder")
    files = starter_files(source)
    for relative in files:
        (directory / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / relative, directory / relative)
        shutil.copymode(source / relative, directory / relative)
    spec = directory / SPEC_FILE
    name = "".join(c if c.isalnum() else "-" for c in directory.resolve().name.lower()).strip("-")
    spec.write_text(spec.read_text().replace("@PROJECT@", name or "my-farm"))
    click.echo(f"created {directory}:")
    for relative in files:
        click.echo(f"  {relative}")
    click.echo(f"edit {spec}, then run `cpb plan` and `cpb build` there")


def starter_files(source: Path) -> list[str]:
    """The starter's files, as relative POSIX paths: what the package ships, not
    what Python left beside it (importing templates/init/dodo.py, or installing
    the package, writes a __pycache__/ there)."""
    return sorted(path.relative_to(source).as_posix() for path in source.rglob("*")
                  if path.is_file() and "__pycache__" not in path.parts
                  and path.suffix not in {".pyc", ".pyo"})


def _targets(project: Project, images: Sequence[str]) -> list[str]:
    pods = [split_task(i)[1] for i in images if i.startswith(task_name(POD, ""))]
    images = [i for i in images if not i.startswith(task_name(POD, ""))]
    for image in images:
        if image not in project.images:
            hint = did_you_mean(image, sorted(project.images))
            if image in project.pods:
                hint = f"; '{image}' is a pod: write pod:{image}"
            raise SpecError(f"no image '{image}' in {project.spec.file.name}{hint}")
    return [task_name(TAG, image) for image in images] + pod_targets(project, pods)


@cli.command()
@plan_options
@click.pass_obj
def plan(opts: Options, images: Sequence[str], as_json: bool, show_all: bool,
         exit_code: bool, push: bool, no_registry_cache: bool) -> None:
    """Show what `cpb build` would run, and why."""
    from cpb.noop.write import write as write_noop
    from cpb.tasks.plan import make_plan

    project = opts.project(registry_cache=not no_registry_cache, list_early=True)
    planned = make_plan(project, _plan_targets(project, images, push))
    pending = [p for p in planned if p.pending]
    if not pending and not images and not push and not project.spec.pods:
        write_noop(project, _started_ns, len(planned))
    if as_json:
        shown = planned if show_all else pending
        click.echo(json.dumps({"project": project.spec.project, "pending": len(pending),
                               "total": len(planned),
                               "tasks": [_with_needs(project, p.as_json(), planned)
                                         for p in shown]}, indent=2))
    else:
        for item in planned:
            if item.pending:
                click.echo(item.task)
                for reason in item.reasons:
                    click.echo(f"    - {reason}")
            elif show_all:
                click.echo(f"{item.task}  (up to date)")
        if pending:
            click.echo(f"{len(pending)} of {len(planned)} tasks pending")
        else:
            click.echo(f"nothing to do: all {len(planned)} tasks up to date")
    if exit_code and pending:
        sys.exit(EXIT_FAILED)


def _with_needs(project: Project, entry: dict[str, object],
                planned: Sequence[PlannedTask]) -> dict[str, object]:
    """A plan entry with the planned tasks it needs (the graph's edges)."""
    names = {p.task for p in planned}
    task = str(entry["task"])
    entry["needs"] = sorted(t for t in project.graph.predecessors(task) if t in names)
    return entry


@cli.command()
@click.argument("images", nargs=-1, shell_complete=complete.images_and_pods)
@click.option("--format", "fmt", type=click.Choice(["dot", "mermaid", "svg", "png"]),
              help="Output format (default: from -o's extension, else dot).")
@click.option("-o", "--output", type=click.Path(path_type=Path, dir_okay=False),
              help="Write to FILE instead of standard output.")
@click.option("--no-registry-cache", is_flag=True,
              help="Show as pending what the registry has (what `cpb build "
                   "--no-registry-cache` would build).")
@click.pass_obj
def graph(opts: Options, images: Sequence[str], fmt: str | None, output: Path | None,
          no_registry_cache: bool) -> None:
    """Draw the task graph (all of it, or IMAGES and pod:NAME and what they need),
    each task coloured by its state in `cpb plan`."""
    from cpb.cli import graphview  # only for `cpb graph`

    fmt = graphview.format_for(output, fmt)
    if fmt in ("svg", "png"):
        graphview.check_dot(fmt)  # before reading the spec and asking local storage
    project = opts.project(registry_cache=not no_registry_cache, list_early=True)
    if images:
        targets = _targets(project, images)
        if project.registry is not None:
            # what a registry project's graph ends in: each image's push
            targets = [task_name(PUSH, split_task(t)[1]) if split_task(t)[0] == TAG else t
                       for t in targets]
    else:
        targets = [t for t in project.graph if project.graph.out_degree(t) == 0]
    view = graphview.task_graph(project, targets)
    text = ""
    if fmt == "mermaid":
        text = graphview.to_mermaid(view)
    else:
        text = graphview.to_dot(view, f"{project.spec.project}: cpb task graph")
    data = (graphview.render_with_dot(project.runner, text, fmt) if fmt in ("svg", "png")
            else text.encode())
    if output is not None:
        write_bytes_atomic(output, data)
        counts = {s: sum(n.state == s for n in view.nodes) for s in graphview.STATES}
        shown = ", ".join(f"{c} {graphview.STATES[s][0]}" for s, c in counts.items() if c)
        click.echo(f"wrote {output} ({fmt}): {len(view.nodes)} tasks ({shown}), "
                   f"{len(view.edges)} edges", err=True)
    elif fmt == "png" and sys.stdout.isatty():
        raise SpecError("not writing a png to a terminal; give -o FILE or redirect the output")
    else:
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
        sys.stdout.flush()


@cli.command()
@build_options
@click.pass_obj
def build(opts: Options, images: Sequence[str], jobs: int, keep_going: bool, push: bool,
          no_registry_cache: bool, progress: str) -> None:
    """Build what changed (all images, or IMAGES and what they need)."""
    def targets(project: Project) -> list[str]:
        _refuse_pods(project, images, "build" + (" --push" if push else ""))
        return _registry_targets(project, images, push)

    _run(opts.opening(registry_cache=not no_registry_cache), targets, jobs, keep_going,
         everything=not images and not push, progress=progress)


def _refuse_pods(project: Project, names: Sequence[str], command: str) -> None:
    """`cpb build`/`cpb push` make images; a `pod:` name would start a pod (`cpb up`'s job)."""
    for name in names:
        if name.startswith(task_name(POD, "")):
            pod = split_task(name)[1]
            spec = project.spec.pods.get(pod)
            images = " ".join(dict.fromkeys(c.image for c in spec.containers)) if spec else ""
            hint = f", or `cpb {command} {images}` for its images only" if images else ""
            raise SpecError(f"`cpb {command}` builds images and starts no pod: for {name} "
                            f"run `cpb up {pod}`{hint}")


@cli.command()
@click.argument("images", nargs=-1, shell_complete=complete.images_and_pods)
@jobs_option()
@keep_going_option
@click.option("--no-registry-cache", is_flag=True,
              help="Build even what the registry already has, instead of pulling it.")
@progress_option
@click.pass_obj
def push(opts: Options, images: Sequence[str], jobs: int, keep_going: bool,
         no_registry_cache: bool, progress: str) -> None:
    """Push to the spec's registry what it does not have (building it first if needed)."""
    def targets(project: Project) -> list[str]:
        _refuse_pods(project, images, "push")
        return _registry_targets(project, images, True)

    _run(opts.opening(registry_cache=not no_registry_cache), targets, jobs, keep_going,
         progress=progress)


def _registry_targets(project: Project, images: Sequence[str], push: bool) -> list[str]:
    """Tasks to run: tag: (or push:) of IMAGES, or of every image when a registry adds push:."""
    if push and project.registry is None:
        raise SpecError(f"no 'registry:' in {project.spec.file.name}; add one to push "
                        "(registry: {url: HOST[:PORT][/PATH]})")
    if not images and project.registry is None:
        # every image; pods are started by `cpb up`, not by a build
        return [task_name(TAG, image) for image in project.images]
    targets = _targets(project, images or sorted(project.images))
    if not push:
        return targets
    pushes = []
    for target in targets:
        kind, subject = split_task(target)
        pushes.append(task_name(PUSH, subject) if kind == TAG else target)
    return pushes


def _plan_targets(project: Project, images: Sequence[str], push: bool) -> list[str]:
    """What `cpb plan` looks at: what a build would do, plus the pods that are up
    (a running pod whose image changes is re-created by the next `cpb up`)."""
    from cpb.tasks.plan import default_tasks

    if images or push:
        return _registry_targets(project, images, push)
    running = default_tasks(project, sorted(task_name(POD, pod) for pod in project.pods))
    return [task_name(TAG, image) for image in project.images] + running


def _run(opening: Opening, targets: Callable[[Project], Sequence[str]], jobs: int,
         keep_going: bool, everything: bool = False, progress: str = "auto") -> None:
    """The workflow (cpb.workflow) for `targets`; `everything`: they are every image's tag:."""

    from cpb.noop.record import forget
    from cpb.noop.write import write as write_noop
    from cpb.workflow import run_tasks

    def noop(project: Project, tasks: int) -> None:
        if everything:
            write_noop(project, _started_ns, tasks)

    def check(project: Project, wanted: Sequence[str]) -> None:
        if project.cache.offline:
            _check_offline(project, wanted)

    def display(project: Project, pending: int) -> object:
        from cpb.cli.display import make_display  # only when there is work

        forget(project.spec.root)
        return make_display(progress, project.state.log_path, pending)

    outcome = run_tasks(opening, targets, jobs=jobs, keep_going=keep_going,
                        on_wait=_say_waiting, on_ended=_say, check=check, on_noop=noop,
                        display=display,                        command=shlex.join(["cpb", *_argv]))
    if not outcome.ran:
        click.echo(f"0 done, {outcome.tasks} up to date")  # the last line of a doit run
    if outcome.code != 0:
        sys.exit(EXIT_FAILED)


def _say(text: str) -> None:
    click.echo(text, err=True)


def _say_waiting(holder: str) -> None:
    _say(f"waiting for another cpb run in this project ({holder}) to finish...")


@cli.command()
@click.option("--registry-write", is_flag=True,
              help="Also test that the spec's registry lets you push (nothing is written).")
@click.pass_obj
def doctor(opts: Options, registry_write: bool) -> None:
    """Check that this machine can build: podman, cekit, starting a container,
    and the registry of the cpb.yaml here (reachable, TLS, credentials)."""
    from cpb.cli.doctor import run_checks  # only for `cpb doctor`

    checks = run_checks(make_runner())
    spec_file = opts.spec_file
    if spec_file is None:
        try:
            spec_file = find_spec_file(Path.cwd())
        except SpecError:
            spec_file = None  # no project here: the machine checks only
    if spec_file is not None:
        from cpb.cli.doctor_registry import registry_checks
        from cpb.spec.model import load_spec

        checks += registry_checks(load_spec(spec_file), write=registry_write)
    elif registry_write:
        raise SpecError(f"--registry-write: no {SPEC_FILE} here or above to take the "
                        "registry from; give one with -f")
    for check in checks:
        mark = "ok " if check.ok else ("!! " if check.required else "-- ")
        click.echo(f"{mark} {check.name}: {check.detail}")
    if any(not c.ok and c.required for c in checks):
        raise EnvironmentProblem("this machine cannot build yet; fix the checks marked !!")


@cli.command()
def schema() -> None:
    """Print the JSON Schema of cpb.yaml (for editors)."""
    from cpb.spec.schema import schema_json

    click.echo(schema_json(), nl=False)


def _check_offline(project: Project, targets: Sequence[str]) -> None:
    """All artifacts the pending builds need are cached, or one error naming the others."""
    from cpb.adapters.artifacts import ArtifactsMissing, missing_message
    from cpb.tasks.plan import make_plan

    keys = [subject for kind, subject in (split_task(p.task) for p in
                                          make_plan(project, targets) if p.pending)
            if kind == FETCH]
    if keys:
        raise ArtifactsMissing(missing_message([project.downloads[k] for k in keys],
                                               project.cache.root))


@cli.command()
@click.argument("images", nargs=-1, shell_complete=complete.images)
@click.option("-j", "--jobs", default=4, show_default=True, type=click.IntRange(1, 32),
              help="Downloads to run at once.")
@click.pass_obj
def fetch(opts: Options, images: Sequence[str], jobs: int) -> None:
    """Fetch every url artifact (of all images, or IMAGES) into the artifact cache."""
    from cpb.adapters.artifacts import ArtifactsMissing, FetchError, missing_message
    from cpb.cli.progress import ProgressLines
    from cpb.resolve.downloads import collect_downloads

    project = opts.project()
    _targets(project, images)
    downloads = list(collect_downloads(project.spec, images or None).values())
    if project.cache.offline:
        missing = project.cache.missing(downloads)
        if missing:
            raise ArtifactsMissing(missing_message(missing, project.cache.root))
    progress = ProgressLines(lambda line: click.echo(line, err=True))
    results, errors = [], []
    for download, outcome in _fetch_all(project.cache, downloads, jobs, progress):
        if isinstance(outcome, FetchError):
            errors.append(download.name)
            click.echo(f"  FAIL {outcome}", err=True)
            continue
        results.append(outcome)
        if outcome.fetched:
            click.echo(f"  ok  {outcome.download.name} ({outcome.size / 1e6:.1f} MB "
                       f"in {outcome.seconds:.1f} s)", err=True)
    fetched = [r for r in results if r.fetched]
    click.echo(f"{len(downloads)} artifact(s): {len(fetched)} fetched, "
               f"{len(results) - len(fetched)} already cached, {len(errors)} failed "
               f"({project.cache.root})")
    if errors:
        # each failure's reason is on its FAIL line above: not said twice
        raise FetchError(f"{len(errors)} of {len(downloads)} artifact(s) failed to fetch: "
                         f"{', '.join(errors)} (see FAIL above)")


def _fetch_all(cache: ArtifactCache, downloads: Sequence[Download], jobs: int,
               progress: Progress) -> Iterator[tuple[Download, FetchResult | FetchError]]:
    """Fetch in `jobs` threads; each (download, result or error) as it ends.

    The threads are daemons and an interrupt cancels their downloads: Ctrl-C
    or SIGTERM ends `cpb fetch` at once, even while a server stalls mid-body
    (a pool's threads would be waited for, at the latest when Python exits).
    """
    import queue
    import threading

    from cpb.adapters.artifacts import FetchError, cancel_downloads

    todo: queue.SimpleQueue[Download] = queue.SimpleQueue()
    for download in downloads:
        todo.put(download)
    done: queue.SimpleQueue[tuple[Download, FetchResult | BaseException]] = queue.SimpleQueue()

    def work() -> None:
        while True:
            try:
                download = todo.get_nowait()
            except queue.Empty:
                return
            try:
                done.put((download, cache.fetch(download, progress)))
            except BaseException as exc:  # noqa: BLE001 - handed to the main thread
                done.put((download, exc))

    threads = [threading.Thread(target=work, name=f"cpb-fetch-{n}", daemon=True)
               for n in range(min(jobs, len(downloads)))]
    for thread in threads:
        thread.start()
    try:
        for _ in downloads:
            download, outcome = done.get()
            if isinstance(outcome, FetchError):
                yield download, outcome
            elif isinstance(outcome, BaseException):
                raise outcome
            else:
                yield download, outcome
    except BaseException:
        cancel_downloads()
        deadline = time.monotonic() + 5  # time for each to remove its partial file
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        raise


@cli.group()
def artifact() -> None:
    """Work with url artifacts and the artifact cache."""


@artifact.command("add")
@click.argument("url")
@click.option("--name", help="The artifact's file name (default: the URL's last segment).")
@click.option("--write", is_flag=True,
              help="Insert the entry into cpb.yaml (comments and formatting kept).")
@click.option("--image", metavar="NAME", shell_complete=complete.images,
              help="With --write: under images.NAME (default: under defaults).")
@click.pass_obj
def artifact_add(opts: Options, url: str, name: str | None, write: bool,
                 image: str | None) -> None:
    """Download URL into the cache once and print its cpb.yaml entry with the sha256
    (or, with --write, insert it into cpb.yaml)."""
    from cpb.adapters.artifacts import ArtifactsMissing
    from cpb.cli.progress import ProgressLines
    from cpb.spec.model import url_file_name
    from cpb.spec.schema import ARTIFACT_URL_PATTERN

    if image is not None and not write:
        raise SpecError("--image NAME goes with --write")
    if not re.search(ARTIFACT_URL_PATTERN, url):
        raise SpecError(f"{url!r} is not an http://, https:// or file:// URL")
    name = name or url_file_name(url)
    if not name:
        raise SpecError(f"cannot take a file name from {url!r}; give --name")
    spec_file = opts.spec_file or find_spec_file(Path.cwd()) if write else None
    if spec_file is not None:
        from cpb.cli.specedit import check_new_artifact  # before downloading anything

        check_new_artifact(spec_file, name, image)
    cache = opts.cache()
    if cache.offline:
        raise ArtifactsMissing("--offline: `cpb artifact add` has to download the file")
    result = cache.add(url, name, ProgressLines(lambda line: click.echo(line, err=True)))
    click.echo(f"cached {name} ({result.size} bytes) as {result.path}", err=True)
    entry = (f"- url: {json.dumps(url)}\n  sha256: {result.download.key}\n"
             f"  size: {result.size}\n")
    if name != url_file_name(url):
        entry += f"  name: {json.dumps(name)}\n"
    click.echo(entry, nl=False)
    if spec_file is not None:
        from cpb.cli.specedit import add_artifact

        fields = {"url": url, "sha256": result.download.key}
        if name != url_file_name(url):
            fields["name"] = name
        where = add_artifact(spec_file, fields, image)
        click.echo(f"added {name} to {spec_file} ({where})", err=True)
@cli.command()
@click.argument("name", shell_complete=complete.images_and_pods)
@click.option("-f", "--follow", is_flag=True, help="Keep showing what is written.")
@click.pass_obj
def logs(opts: Options, name: str, follow: bool) -> None:
    """Show the last build log of an image (NAME, or KIND:NAME for one task:
    rootfs, build, push), or the containers' logs of a pod (pod:NAME)."""
    from cpb.cli.logs import show

    code = show(opts.project(), name, follow, lambda line: click.echo(line, err=True))
    if code:
        sys.exit(code)


@cli.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print the shell completion script for SHELL (see the README to enable it)."""
    click.echo(complete.script(cli, shell), nl=False)


cli.add_command(up)
cli.add_command(down)
cli.add_command(status)
cli.add_command(kube)
cli.add_command(submit)
cli.add_command(pki)
cli.add_command(clean)


def main(argv: Sequence[str] | None = None, *, started_ns: int | None = None) -> int:
    """Run the CLI; return the exit code instead of exiting (for tests).

    `started_ns`: when the command started (`time.time_ns()`), for cpb.noop.write.
    """
    global _started_ns, _argv
    _started_ns = started_ns or time.time_ns()
    _argv = list(argv) if argv is not None else sys.argv[1:]
    from cpb.adapters.runner import allow_commands

    allow_commands()  # a command line before this one, in this process, was interrupted
    downloads = sys.modules.get("cpb.adapters.artifacts")
    if downloads is not None:
        downloads.allow_downloads()
    with signals_interrupt():
        return _main(argv)


def _main(argv: Sequence[str] | None) -> int:
    try:
        cli.main(args=list(argv) if argv is not None else None, prog_name="cpb",
                 standalone_mode=False)
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.ClickException as exc:
        if isinstance(exc, click.NoSuchOption):
            exc.message += _global_option_hint(exc.option_name, _argv)
        exc.show()
        return EXIT_SPEC if exc.exit_code == 2 else exc.exit_code
    except (click.Abort, KeyboardInterrupt) as exc:  # click turns Ctrl-C into Abort
        from cpb.adapters.runner import stop_running

        stop_running()  # builds other threads started
        code, message = interruption(exc)
        # doit may still have sys.stderr swapped for another thread's action:
        # write where the user will see it.
        click.echo(message, file=sys.__stderr__ or sys.stderr)
        return code
    except CpbError as exc:
        click.echo(f"cpb: error: {exc}{_advice(exc, _argv)}", err=True)
        return exc.exit_code
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else EXIT_FAILED
    return EXIT_OK


def _global_option_hint(option: str, argv: Sequence[str]) -> str:
    """`cpb plan --offline`: --offline is cpb's own option; say where it goes."""
    name = option.split("=", 1)[0]
    param = next((p for p in cli.params if isinstance(p, click.Option) and name in p.opts),
                 None)
    command = next((i for i, a in enumerate(argv) if a in cli.commands), None)
    if param is None or command is None or name not in [a.split("=", 1)[0] for a in argv]:
        return ""
    at = next(i for i, a in enumerate(argv) if a.split("=", 1)[0] == name)
    taken = 1 if param.is_flag or "=" in argv[at] or at + 1 >= len(argv) else 2
    moved = [*argv[:command], *argv[at:at + taken], *argv[command:at], *argv[at + taken:]]
    return (f" {name} is an option of cpb itself: it goes before the command, "
            f"`{shlex.join(['cpb', *moved])}`")


def _advice(exc: CpbError, argv: Sequence[str]) -> str:
    """What to do next, which depends on the command: a registry that does not
    answer is only a cache for plan, build and up, and they can do without it."""
    from cpb.adapters.registry import RegistryUnreachable

    if not isinstance(exc, RegistryUnreachable):
        return ""
    command = next((a for a in argv if a in cli.commands), "")
    advice = "; images built so far are kept" if command in ("build", "push", "up") else ""
    if command in ("plan", "build", "up") and "--no-registry-cache" not in argv:
        advice += f"; `cpb {command} --no-registry-cache` goes on without its cache"
    return advice


def entry() -> None:
    """The full CLI without the no-op fast path (the console script is cpb.cli.fastpath's)."""
    tune_collector()
    exit_with(main())
