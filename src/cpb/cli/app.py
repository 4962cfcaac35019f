"""The `cpb` command line: parse options, call the library, report errors.

Every `CpbError` becomes one line on stderr and its documented exit code;
nothing else reaches the user as a traceback except a genuine bug.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import click

from cpb import __version__
from cpb.cli.options import (
    Options,
    build_options,
    global_options,
    jobs_option,
    keep_going_option,
)
from cpb.cli.options import plan_options as plan_option_list
from cpb.cli.pods import down, kube, pod_targets, status, up
from cpb.cli.process import exit_with
from cpb.errors import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_SPEC,
    CpbError,
    EnvironmentProblem,
    SpecError,
)
from cpb.naming import FETCH, POD, PUSH, TAG, split_task, task_name
from cpb.state import SPEC_FILE
from cpb.util import did_you_mean

if TYPE_CHECKING:
    from cpb.project import Project
    from cpb.workflow import Opening

# `cpb --version` and `cpb --help` import only the modules above: the
# pipeline (jinja2, networkx, doit) is imported by the commands that use it.

log = logging.getLogger("cpb")
_started_ns = 0  # when this command started: see main() and cpb.noop.write


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="cpb")
@global_options(cache_help="The artifact cache (default: $CPB_CACHE_DIR, else "
                "~/.cache/cpb/artifacts).")
@click.pass_context
def cli(ctx: click.Context, spec_file: Path | None, verbose: bool, cache_dir: Path | None,
        offline: bool) -> None:
    """Build and start ComputePods from one cpb.yaml, rebuilding only what changed."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING,
                        format="cpb: %(levelname)s: %(message)s", stream=sys.stderr)
    ctx.obj = Options(spec_file, cache_dir, offline)


@cli.command()
@click.argument("directory", type=click.Path(path_type=Path, file_okay=False))
def init(directory: Path) -> None:
    """Create a starter project in DIRECTORY: cpb.yaml, modules/, dodo.py."""
    from cpb.resources import templates_dir

    source = templates_dir() / "init"
    if directory.exists() and any(directory.iterdir()):
        raise SpecError(f"{directory} exists and is not empty; choose a new folder")
    shutil.copytree(source, directory, dirs_exist_ok=True)
    spec = directory / SPEC_FILE
    name = "".join(c if c.isalnum() else "-" for c in directory.resolve().name.lower()).strip("-")
    spec.write_text(spec.read_text().replace("@PROJECT@", name or "my-farm"))
    click.echo(f"created {directory}: edit {spec}, then run `cpb plan` and `cpb build` there")


def _targets(project: Project, images: Sequence[str]) -> list[str]:
    pods = [split_task(i)[1] for i in images if i.startswith(task_name(POD, ""))]
    images = [i for i in images if not i.startswith(task_name(POD, ""))]
    for image in images:
        if image not in project.images:
            hint = did_you_mean(image, sorted(project.images))
            raise SpecError(f"no image '{image}' in {project.spec.file.name}{hint}")
    return [task_name(TAG, image) for image in images] + pod_targets(project, pods)


@cli.command()
@plan_option_list
@click.pass_obj
def plan(opts: Options, images: Sequence[str], as_json: bool, show_all: bool,
         exit_code: bool, push: bool, no_registry_cache: bool) -> None:
    """Show what `cpb build` would run, and why (writes nothing but the no-op record)."""
    from cpb.noop.write import write as write_noop
    from cpb.tasks.plan import make_plan

    project = opts.project(registry_cache=not no_registry_cache)
    planned = make_plan(project, _plan_targets(project, images, push))
    pending = [p for p in planned if p.pending]
    if not pending and not images and not push and not project.spec.pods:
        write_noop(project, _started_ns, len(planned))
    if as_json:
        shown = planned if show_all else pending
        click.echo(json.dumps({"project": project.spec.project, "pending": len(pending),
                               "total": len(planned),
                               "tasks": [p.as_json() for p in shown]}, indent=2))
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


@cli.command()
@build_options
@click.pass_obj
def build(opts: Options, images: Sequence[str], jobs: int, keep_going: bool, push: bool,
          no_registry_cache: bool) -> None:
    """Build what changed (all images, or IMAGES and what they need)."""
    _run(opts.opening(registry_cache=not no_registry_cache),
         lambda project: _registry_targets(project, images, push), jobs, keep_going,
         everything=not images and not push)


@cli.command()
@click.argument("images", nargs=-1)
@jobs_option()
@keep_going_option
@click.option("--no-registry-cache", is_flag=True,
              help="Build even what the registry already has, instead of pulling it.")
@click.pass_obj
def push(opts: Options, images: Sequence[str], jobs: int, keep_going: bool,
         no_registry_cache: bool) -> None:
    """Push to the spec's registry what it does not have (building it first if needed)."""
    _run(opts.opening(registry_cache=not no_registry_cache),
         lambda project: _registry_targets(project, images, True), jobs, keep_going)


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
    if images or push:
        return _registry_targets(project, images, push)
    from cpb.tasks.plan import default_tasks

    running = default_tasks(project, sorted(task_name(POD, pod) for pod in project.pods))
    return [task_name(TAG, image) for image in project.images] + running


def _run(opening: Opening, targets: Callable[[Project], Sequence[str]], jobs: int,
         keep_going: bool, everything: bool = False) -> None:
    """The workflow (cpb.workflow) for `targets`; `everything`: they are every image's tag:."""
    from cpb.noop.record import forget
    from cpb.noop.write import write as write_noop
    from cpb.workflow import run_tasks

    def waiting(holder: str) -> None:
        click.echo(f"waiting for another cpb run in this project ({holder}) to finish...",
                   err=True)

    def noop(project: Project, tasks: int) -> None:
        if everything:
            write_noop(project, _started_ns, tasks)

    def check(project: Project, wanted: Sequence[str]) -> None:
        if project.cache.offline:
            _check_offline(project, wanted)

    outcome = run_tasks(opening, targets, jobs=jobs, keep_going=keep_going, on_wait=waiting,
                        check=check, on_noop=noop,
                        on_work=lambda project: forget(project.spec.root))
    if not outcome.ran:
        click.echo(f"0 done, {outcome.tasks} up to date")  # the last line of a doit run
    if outcome.code != 0:
        sys.exit(EXIT_FAILED)


@cli.command()
@click.option("--images", is_flag=True,
              help="Also remove this project's images from local storage.")
@click.pass_obj
def clean(opts: Options, images: bool) -> None:
    """Remove .cpb/ (rendered descriptors, logs, records)."""
    project = opts.project()
    with project.state.lock(wait=False):
        if images:
            prefix = f"localhost/{project.spec.project}/"
            refs = sorted(r for r in project.store.snapshot().ids if r.startswith(prefix))
            project.store.remove(refs)
            click.echo(f"removed {len(refs)} image tag(s)")
        for child in sorted(project.state.root.iterdir()):
            if child.name == "lock":
                continue  # we hold it: removing it would let a second run in
            if child.is_dir():
                shutil.rmtree(child)
            else:
                child.unlink()
    click.echo(f"removed the contents of {project.state.root}")


@cli.command()
def doctor() -> None:
    """Check that this machine can build: podman, cekit, starting a container."""
    from cpb.adapters.runner import ProcessRunner
    from cpb.cli.doctor import run_checks  # only for `cpb doctor`

    checks = run_checks(ProcessRunner())
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
@click.argument("images", nargs=-1)
@click.option("-j", "--jobs", default=4, show_default=True, type=click.IntRange(1, 32),
              help="Downloads to run at once.")
@click.pass_obj
def fetch(opts: Options, images: Sequence[str], jobs: int) -> None:
    """Fetch every url artifact (of all images, or IMAGES) into the artifact cache."""
    from concurrent.futures import ThreadPoolExecutor, as_completed

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
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = {pool.submit(project.cache.fetch, d, progress): d for d in downloads}
        for future in as_completed(futures):
            try:
                result = future.result()
            except FetchError as exc:
                errors.append(str(exc))
                click.echo(f"  FAIL {exc}", err=True)
                continue
            results.append(result)
            if result.fetched:
                click.echo(f"  ok  {result.download.name} ({result.size / 1e6:.1f} MB "
                           f"in {result.seconds:.1f} s)", err=True)
    fetched = [r for r in results if r.fetched]
    click.echo(f"{len(downloads)} artifact(s): {len(fetched)} fetched, "
               f"{len(results) - len(fetched)} already cached, {len(errors)} failed "
               f"({project.cache.root})")
    if errors:
        raise FetchError(errors[0] if len(errors) == 1 else
                         f"{len(errors)} artifacts failed to fetch; first: {errors[0]}")


@cli.group()
def artifact() -> None:
    """Work with url artifacts and the artifact cache."""


@artifact.command("add")
@click.argument("url")
@click.option("--name", help="The artifact's file name (default: the URL's last segment).")
@click.pass_obj
def artifact_add(opts: Options, url: str, name: str | None) -> None:
    """Download URL into the cache once and print its cpb.yaml entry with the sha256."""
    from cpb.adapters.artifacts import ArtifactsMissing
    from cpb.cli.progress import ProgressLines
    from cpb.spec.model import url_file_name
    from cpb.spec.schema import ARTIFACT_URL_PATTERN

    if not re.search(ARTIFACT_URL_PATTERN, url):
        raise SpecError(f"{url!r} is not an http://, https:// or file:// URL")
    name = name or url_file_name(url)
    if not name:
        raise SpecError(f"cannot take a file name from {url!r}; give --name")
    cache = opts.cache()
    if cache.offline:
        raise ArtifactsMissing("--offline: `cpb artifact add` has to download the file")
    result = cache.add(url, name, ProgressLines(lambda line: click.echo(line, err=True)))
    click.echo(f"cached {name} ({result.size} bytes) as {result.path}", err=True)
    entry = f"- url: {json.dumps(url)}\n  sha256: {result.download.key}\n"
    if name != url_file_name(url):
        entry += f"  name: {json.dumps(name)}\n"
    click.echo(entry, nl=False)
cli.add_command(up)
cli.add_command(down)
cli.add_command(status)
cli.add_command(kube)


def main(argv: Sequence[str] | None = None, *, started_ns: int | None = None) -> int:
    """Run the CLI; return the exit code instead of exiting (for tests).

    `started_ns`: when the command started (`time.time_ns()`), for cpb.noop.write.
    """
    global _started_ns
    _started_ns = started_ns or time.time_ns()
    try:
        cli.main(args=list(argv) if argv is not None else None, prog_name="cpb",
                 standalone_mode=False)
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        return EXIT_SPEC if exc.exit_code == 2 else exc.exit_code
    except (click.Abort, KeyboardInterrupt):  # click turns Ctrl-C into Abort
        from cpb.adapters.runner import stop_running

        stop_running()  # builds other threads started
        # doit may still have sys.stderr swapped for another thread's action:
        # write where the user will see it.
        click.echo("interrupted; everything finished so far is kept",
                   file=sys.__stderr__ or sys.stderr)
        return EXIT_INTERRUPTED
    except CpbError as exc:
        click.echo(f"cpb: error: {exc}", err=True)
        return exc.exit_code
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else EXIT_FAILED
    return EXIT_OK


def entry() -> None:
    """The full CLI without the no-op fast path (the console script is cpb.cli.fastpath's)."""
    exit_with(main())
