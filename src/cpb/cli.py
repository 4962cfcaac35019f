"""The `cpb` command line: parse options, call the library, report errors.

Every `CpbError` becomes one line on stderr and its documented exit code;
nothing else reaches the user as a traceback except a genuine bug.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from . import __version__
from .doitapp import run_doit
from .errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_SPEC, CpbError, SpecError
from .graph import task_name
from .plan import make_plan
from .project import Project, open_project
from .resources import templates_dir
from .runner import stop_running
from .schema import did_you_mean, schema_json
from .spec import SPEC_FILE, find_spec_file

log = logging.getLogger("cpb")


class _Options:
    def __init__(self, spec_file: Path | None) -> None:
        self.spec_file = spec_file

    def project(self) -> Project:
        return open_project(self.spec_file or find_spec_file(Path.cwd()))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="cpb")
@click.option("-f", "--file", "spec_file", type=click.Path(path_type=Path, dir_okay=False),
              help=f"The spec to use (default: {SPEC_FILE} here or in a folder above).")
@click.option("-v", "--verbose", is_flag=True, help="Log what cpb does.")
@click.pass_context
def cli(ctx: click.Context, spec_file: Path | None, verbose: bool) -> None:
    """Build and start ComputePods from one cpb.yaml, rebuilding only what changed."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING,
                        format="cpb: %(levelname)s: %(message)s", stream=sys.stderr)
    ctx.obj = _Options(spec_file)


@cli.command()
@click.argument("directory", type=click.Path(path_type=Path, file_okay=False))
def init(directory: Path) -> None:
    """Create a starter project in DIRECTORY: cpb.yaml, modules/, dodo.py."""
    source = templates_dir() / "init"
    if directory.exists() and any(directory.iterdir()):
        raise SpecError(f"{directory} exists and is not empty; choose a new folder")
    shutil.copytree(source, directory, dirs_exist_ok=True)
    spec = directory / SPEC_FILE
    name = "".join(c if c.isalnum() else "-" for c in directory.resolve().name.lower()).strip("-")
    spec.write_text(spec.read_text().replace("@PROJECT@", name or "my-farm"))
    click.echo(f"created {directory}: edit {spec}, then run `cpb plan` and `cpb build` there")


def _targets(project: Project, images: Sequence[str]) -> list[str]:
    for image in images:
        if image not in project.images:
            hint = did_you_mean(image, sorted(project.images))
            raise SpecError(f"no image '{image}' in {project.spec.file.name}{hint}")
    return [task_name("tag", image) for image in images]


@cli.command()
@click.argument("images", nargs=-1)
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
@click.option("--all", "show_all", is_flag=True, help="Also list tasks that are up to date.")
@click.option("--exit-code", is_flag=True, help="Exit with 1 when anything is pending (for CI).")
@click.pass_obj
def plan(opts: _Options, images: Sequence[str], as_json: bool, show_all: bool,
         exit_code: bool) -> None:
    """Show what `cpb build` would run, and why."""
    project = opts.project()
    planned = make_plan(project, _targets(project, images))
    pending = [p for p in planned if p.pending]
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
@click.argument("images", nargs=-1)
@click.option("-j", "--jobs", default=1, show_default=True, type=click.IntRange(1, 64),
              help="Tasks to run at once (independent images build in parallel).")
@click.option("--keep-going/--fail-fast", "-k/-x", default=True, show_default=True,
              help="After a failure, go on with images that do not depend on it.")
@click.pass_obj
def build(opts: _Options, images: Sequence[str], jobs: int, keep_going: bool) -> None:
    """Build what changed (all images, or IMAGES and what they need)."""
    project = opts.project()
    targets = _targets(project, images)

    waited: list[str] = []

    def waiting(holder: str) -> None:
        waited.append(holder)
        click.echo(f"waiting for another cpb run in this project ({holder}) to finish...",
                   err=True)

    with project.state.lock(on_wait=waiting) as lock_fd:
        if waited:
            # the other run changed local storage: what we saw before waiting is stale
            project.store.invalidate()
        project.runner.keep_fds = (lock_fd,)
        code = run_doit(project, targets, jobs=jobs, keep_going=keep_going)
    if code != 0:
        sys.exit(EXIT_FAILED)


@cli.command()
@click.option("--images", is_flag=True, help="Also remove this project's images from local storage.")
@click.pass_obj
def clean(opts: _Options, images: bool) -> None:
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
def schema() -> None:
    """Print the JSON Schema of cpb.yaml (for editors)."""
    click.echo(schema_json(), nl=False)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the exit code instead of exiting (for tests)."""
    try:
        cli.main(args=list(argv) if argv is not None else None, prog_name="cpb",
                 standalone_mode=False)
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        return EXIT_SPEC if exc.exit_code == 2 else exc.exit_code
    except (click.Abort, KeyboardInterrupt):  # click turns Ctrl-C into Abort
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
    code = main()
    if code == EXIT_INTERRUPTED:
        # doit's worker threads may still wait for work that will never come;
        # everything is on disk, so do not wait for them.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)
