"""The options of `cpb`, `cpb plan` and `cpb build`, defined once.

The click app (cpb.cli.app) and the fast path (cpb.cli.fastpath) both take
their options from here, so a command line one accepts the other accepts
too, with the same parameter types (`-j 0` is refused by both).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from cpb.state import SPEC_FILE, find_spec_file

if TYPE_CHECKING:
    from cpb.adapters.artifacts import ArtifactCache
    from cpb.project import Project
    from cpb.workflow import Opening

F = TypeVar("F", bound=Callable[..., Any])


class Options:
    """The options of `cpb` itself, for every command."""

    def __init__(self, spec_file: Path | None, cache_dir: Path | None = None,
                 offline: bool = False) -> None:
        self.spec_file = spec_file
        self.cache_dir, self.offline = cache_dir, offline

    def cache(self) -> ArtifactCache:
        from cpb.adapters.artifacts import ArtifactCache

        return ArtifactCache(self.cache_dir, offline=self.offline or None)

    def opening(self, *, registry_cache: bool = True) -> Opening:
        from cpb.workflow import Opening

        return Opening(self.spec_file or find_spec_file(Path.cwd()), cache=self.cache(),
                       registry_cache=registry_cache)

    def project(self, *, registry_cache: bool = True) -> Project:
        """The project, opened without the lock (plan, status, kube...)."""
        from cpb.adapters.runner import ProcessRunner
        from cpb.project import open_project

        opening = self.opening(registry_cache=registry_cache)
        return open_project(opening.spec_file, runner=ProcessRunner(), cache=opening.cache,
                            registry_cache=registry_cache)


def _apply(*decorators: Callable[[F], F]) -> Callable[[F], F]:
    def apply(function: F) -> F:
        for decorator in reversed(decorators):
            function = decorator(function)
        return function
    return apply


def global_options(cache_help: str) -> Callable[[F], F]:
    """Options of `cpb` itself, before the command."""
    return _apply(
        click.option("-f", "--file", "spec_file",
                     type=click.Path(path_type=Path, dir_okay=False),
                     help=f"The spec to use (default: {SPEC_FILE} here or in a folder above)."),
        click.option("-v", "--verbose", is_flag=True, help="Log what cpb does."),
        click.option("--cache-dir", type=click.Path(path_type=Path, file_okay=False),
                     help=cache_help),
        click.option("--offline", is_flag=True,
                     help="Fetch nothing: use only artifacts already in the cache."),
    )


plan_options = _apply(
    click.argument("images", nargs=-1),
    click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON."),
    click.option("--all", "show_all", is_flag=True, help="Also list tasks that are up to date."),
    click.option("--exit-code", is_flag=True,
                 help="Exit with 1 when anything is pending (for CI)."),
    click.option("--push", is_flag=True,
                 help="Also plan the pushes (what `cpb build --push` does)."),
    click.option("--no-registry-cache", is_flag=True,
                 help="Plan to build even what the registry already has."),
)


def jobs_option(default: int = 1, most: int = 64,
                help: str = "Tasks to run at once.") -> Callable[[F], F]:
    return click.option("-j", "--jobs", default=default, show_default=True,
                        type=click.IntRange(1, most), help=help)


keep_going_option = click.option(
    "--keep-going/--fail-fast", "-k/-x", default=True, show_default=True,
    help="After a failure, go on with images that do not depend on it.")

build_options = _apply(
    click.argument("images", nargs=-1),
    jobs_option(help="Tasks to run at once (independent images build in parallel)."),
    keep_going_option,
    click.option("--push", is_flag=True, help="Then push what the registry does not have."),
    click.option("--no-registry-cache", is_flag=True,
                 help="Build even what the registry already has, instead of pulling it."),
)
