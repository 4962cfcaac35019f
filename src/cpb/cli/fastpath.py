"""The `cpb` process: the no-op fast path when it applies, else the full CLI.

A plain `cpb [-f FILE] plan [--exit-code]` or `cpb [-f FILE] build [-j N]
[-k|-x] [--progress MODE]` (no image names, no pods for `plan`: whether a pod is running is
not a file) is answered from `.cpb/noop.json` when nothing changed since a
full run found nothing to do (see cpb.noop.record). The command line is
parsed by click with the full CLI's own option definitions (cpb.cli.options),
so a line the full CLI refuses is never answered here: it falls through, and
the full CLI says what is wrong. `CPB_NO_FAST_PATH=1` turns it off.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click

from cpb.adapters.runner import Runner
from cpb.cli.complete import COMPLETE_VAR
from cpb.cli.options import build_options, global_options, plan_options
from cpb.cli.process import exit_with, tune_collector
from cpb.cli.session import interruption, signals_interrupt
from cpb.errors import CpbError
from cpb.noop.record import DISABLE_ENV, RECORD, unchanged
from cpb.state import StateDir, find_spec_file


@click.group()
@global_options
@click.pass_context
def _fast(ctx: click.Context, /, **options: Any) -> None:
    ctx.obj = options


Parsed = tuple[str, dict[str, Any], dict[str, Any]]  # command, cpb's options, its options


def _command(name: str, options: Callable[[Callable[..., Parsed]], Callable[..., Parsed]]
             ) -> None:
    """`name` under _fast, with the full CLI's options: it returns what was parsed."""
    def parsed(globals_: dict[str, Any], /, **given: Any) -> Parsed:
        return name, globals_, given

    _fast.command(name)(options(click.pass_obj(parsed)))


_command("plan", plan_options)
_command("build", build_options)


def parse(argv: Sequence[str]) -> tuple[Path | None, str] | None:
    """(spec file or None, command) of a plain plan/build; None: the full path."""
    if COMPLETE_VAR in os.environ:
        return None  # a shell asking for completions: the full CLI answers
    try:
        parsed = _fast.main(list(argv), prog_name="cpb", standalone_mode=False)
    except (click.ClickException, click.exceptions.Exit, click.Abort):
        return None  # refused, or --help / --version: the full CLI answers
    if not isinstance(parsed, tuple):
        return None
    command, globals_, options = parsed
    if (globals_["verbose"] or globals_["cache_dir"] or globals_["offline"]
            or globals_["allow_host_paths"]):
        return None
    if options["images"] or options["push"] or options["no_registry_cache"]:
        return None
    if command == "plan" and (options["as_json"] or options["show_all"]):
        return None
    return globals_["spec_file"], command


def _runner() -> Runner:
    """The CLI's runner (cli.options.make_runner, looked up now: a test's fake, if any)."""
    from cpb.cli import options

    return options.make_runner()


def fast_path(argv: Sequence[str]) -> int | None:
    """Exit code of a no-op plan/build answered from the record; None: run in full."""
    if os.environ.get(DISABLE_ENV, "") not in ("", "0"):
        return None
    parsed = parse(argv)
    if parsed is None:
        return None
    spec, command = parsed
    try:
        spec = (spec or find_spec_file(Path.cwd())).resolve()  # SpecError: full path
        state = StateDir(spec.parent)
        record_file = state.root / RECORD
        if not record_file.is_file():
            return None
        if command == "plan":
            tasks = unchanged(record_file, spec, command, _runner())
            if tasks is None:
                return None
            print(f"nothing to do: all {tasks} tasks up to date")
            return 0
        # A build holds the project lock while it looks, as the full path does;
        # if another run has it, the full path waits for it and says so.
        # A dead run's leftovers are ended here too, and said so.
        with state.lock(wait=False, on_ended=lambda text: print(text, file=sys.stderr)):
            tasks = unchanged(record_file, spec, command, _runner())
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
        from cpb.cli.app import main as full_main  # the full CLI, imported only when needed

        return full_main(args, started_ns=started)


def entry() -> None:
    """The console script `cpb` and `python -m cpb`."""
    tune_collector()
    exit_with(main())
