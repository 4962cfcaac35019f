"""Host paths outside the project: used only with the user's consent.

A project is written by someone else. Its cpb.yaml and modules may name any
path of the machine (`volumes: [{host: /}]`, an artifact `path:` of
~/.config/containers/auth.json), and cpb would mount it into a pod or copy
it into an image that is later pushed. So a path outside the project is
refused unless the *user* allowed it: `cpb --allow-host-path PATH` (the
option may be repeated) or the environment variable CPB_ALLOW_HOST_PATHS
(paths separated by ':'). Nothing the project itself contains can consent.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

CONSENT_ENV = "CPB_ALLOW_HOST_PATHS"


@dataclass(frozen=True)
class HostPaths:
    """The host folders (and files) the user allowed, each with symlinks resolved."""

    allowed: tuple[Path, ...] = ()

    def allows(self, path: Path) -> bool:
        return any(path == root or path.is_relative_to(root) for root in self.allowed)

    @classmethod
    def from_user(cls, paths: Iterable[str | Path] = (),
                  env: Mapping[str, str] | None = None) -> HostPaths:
        """The `--allow-host-path` options plus $CPB_ALLOW_HOST_PATHS."""
        env = os.environ if env is None else env
        given = [*paths, *(p for p in env.get(CONSENT_ENV, "").split(os.pathsep) if p)]
        return cls(tuple(dict.fromkeys(Path(os.path.realpath(os.path.expanduser(p)))
                                       for p in given)))


def inside(path: str | Path, root: str | Path) -> bool:
    """`path` (symlinks resolved) is `root` or below it (both absolute)."""
    # as strings: Path.is_relative_to builds a new path each time, and a spec
    # of hundreds of images asks this for every file it names
    here, top = str(path), str(root)
    return here == top or here.startswith(top.rstrip(os.sep) + os.sep)


def refusal(what: str, real: str | Path) -> str:
    """The message for a host path the user has not allowed; it says how to allow it."""
    return (f"{what} {real} is outside the project; a project cannot use host paths on its "
            f"own: if you trust it, allow it with `cpb --allow-host-path {real} ...` or "
            f"{CONSENT_ENV}={real}")
