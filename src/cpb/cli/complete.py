"""Shell completion (click's own): image and pod names from the spec, and the scripts.

A shell asks `cpb` with `_CPB_COMPLETE=bash_complete` (or zsh_complete,
fish_complete) in the environment; click answers with commands and options,
and these functions answer with the names in cpb.yaml. Completion must never
fail loudly: a spec that cannot be read completes nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from click.shell_completion import CompletionItem, get_completion_class

from cpb.naming import POD, task_name
from cpb.state import find_spec_file

PROG = "cpb"
COMPLETE_VAR = "_CPB_COMPLETE"


def _spec_names(ctx: click.Context) -> tuple[list[str], list[str]]:
    """(image names, pod names) of the spec `-f` names, or the one found from here."""
    import yaml

    root = ctx.find_root()
    given = root.params.get("spec_file")
    try:
        path = Path(given) if given else find_spec_file(Path.cwd())
        data = yaml.safe_load(path.read_text())
    except Exception:  # noqa: BLE001 - a broken spec completes nothing, never a traceback
        return [], []
    if not isinstance(data, dict):
        return [], []
    images, pods = data.get("images"), data.get("pods")
    return ([str(k) for k in images] if isinstance(images, dict) else [],
            [str(k) for k in pods] if isinstance(pods, dict) else [])


def _items(names: list[str], incomplete: str, help_text: str) -> list[CompletionItem]:
    return [CompletionItem(n, help=help_text) for n in sorted(names) if n.startswith(incomplete)]


def images(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    return _items(_spec_names(ctx)[0], incomplete, "image")


def pods(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    return _items(_spec_names(ctx)[1], incomplete, "pod")


def images_and_pods(ctx: click.Context, param: click.Parameter,
                    incomplete: str) -> list[CompletionItem]:
    image_names, pod_names = _spec_names(ctx)
    return (_items(image_names, incomplete, "image")
            + _items([task_name(POD, p) for p in pod_names], incomplete, "pod"))


def script(cli: Any, shell: str) -> str:
    """The completion script for `shell` (bash, zsh, fish), as click writes it."""
    cls = get_completion_class(shell)
    if cls is None:
        raise click.BadParameter(f"no completion for {shell}")
    return str(cls(cli, {}, PROG, COMPLETE_VAR).source())
