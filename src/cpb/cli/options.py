"""The options of `cpb`, `cpb plan` and `cpb build`, defined once.

The click app (cpb.cli.app) and the fast path (cpb.cli.fastpath) both take
their options from here, so a command line one accepts the other accepts
too, with the same parameter types (`-j 0` is refused by both).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from cpb.cli import complete
from cpb.cli.display import progress_option
from cpb.spec.consent import CONSENT_ENV, HostPaths
from cpb.state import SPEC_FILE, find_spec_file

if TYPE_CHECKING:
    from cpb.adapters.artifacts import ArtifactCache
    from cpb.adapters.runner import Runner
    from cpb.project import Project
    from cpb.state import HeldLock
    from cpb.workflow import Opening

F = TypeVar("F", bound=Callable[..., Any])


def make_runner(lock: HeldLock | None = None) -> Runner:
    """The runner every command of this process uses; under `lock` when given.

    The one place the CLI makes it: a unit test of the CLI puts its fake here.
    """
    from cpb.adapters.runner import ProcessRunner

    return ProcessRunner.holding(lock) if lock is not None else ProcessRunner()


def _runner_under(lock: HeldLock) -> Runner:
    return make_runner(lock)  # looked up at call time: the test's fake, if any


class Options:
    """The options of `cpb` itself, for every command."""

    def __init__(self, spec_file: Path | None, cache_dir: Path | None = None,
                 offline: bool = False, allow_host_paths: Sequence[str] = ()) -> None:
        self.spec_file = spec_file
        self.cache_dir, self.offline = cache_dir, offline
        self.host_paths = HostPaths.from_user(allow_host_paths)

    def cache(self) -> ArtifactCache:
        from cpb.adapters.artifacts import ArtifactCache

        return ArtifactCache(self.cache_dir, offline=self.offline or None)

    def opening(self, *, registry_cache: bool = True) -> Opening:
        """How cpb.workflow opens the project (under its lock)."""
        from cpb.workflow import Opening

        return Opening(self.spec_file or find_spec_file(Path.cwd()), cache=self.cache(),
                       registry_cache=registry_cache, host_paths=self.host_paths,
                       runner=_runner_under)

    def project(self, *, registry_cache: bool = True, list_early: bool = False) -> Project:
        """The project, opened without the lock (plan, status, kube...);
        `list_early`: see cpb.project.resolve_project."""
        from cpb.project import open_project

        return open_project(self.spec_file or find_spec_file(Path.cwd()),
                            runner=make_runner(), cache=self.cache(),
                            registry_cache=registry_cache, host_paths=self.host_paths,
                            list_early=list_early)


def _apply(*decorators: Callable[[F], F]) -> Callable[[F], F]:
    def apply(function: F) -> F:
        for decorator in reversed(decorators):
            function = decorator(function)
        return function
    return apply


global_options = _apply(
    click.option("-f", "--file", "spec_file", type=click.Path(path_type=Path, dir_okay=False),
                 help=f"The spec to use (default: {SPEC_FILE} here or in a folder above)."),
    click.option("-v", "--verbose", is_flag=True, help="Log what cpb does."),
    click.option("--cache-dir", type=click.Path(path_type=Path, file_okay=False),
                 help="The artifact cache (default: $CPB_CACHE_DIR, else "
                      "$XDG_CACHE_HOME/cpb/artifacts or ~/.cache/cpb/artifacts)."),
    click.option("--offline", is_flag=True,
                 help="Fetch nothing: use only artifacts already in the cache."),
    click.option("--allow-host-path", "allow_host_paths", multiple=True, metavar="PATH",
                 help="Let the project use this host path outside it (a pod volume, an "
                      f"artifact, a module); repeatable; also ${CONSENT_ENV} (':'-separated)."),
)

plan_options = _apply(
    click.argument("images", nargs=-1, shell_complete=complete.images_and_pods),
    click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON."),
    click.option("--all", "show_all", is_flag=True, help="Also list tasks that are up to date."),
    click.option("--exit-code", is_flag=True,
                 help="Exit with 1 when anything is pending (for CI)."),
    click.option("--push", is_flag=True,
                 help="Also plan the pushes (what `cpb build --push` does)."),
    click.option("--no-registry-cache", is_flag=True,
                 help="Plan to build even what the registry already has."),
)


def jobs_option(help: str = "Tasks to run at once.") -> Callable[[F], F]:
    return click.option("-j", "--jobs", default=1, show_default=True,
                        type=click.IntRange(1, 64), help=help)


keep_going_option = click.option(
    "--keep-going/--fail-fast", "-k/-x", default=True, show_default=True,
    help="After a failure, go on with images that do not depend on it.")

build_options = _apply(
    click.argument("images", nargs=-1, shell_complete=complete.images_and_pods),
    jobs_option(help="Tasks to run at once (independent images build in parallel)."),
    keep_going_option,
    click.option("--push", is_flag=True, help="Then push what the registry does not have."),
    click.option("--no-registry-cache", is_flag=True,
                 help="Build even what the registry already has, instead of pulling it."),
    progress_option,
)
