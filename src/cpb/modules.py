"""Finding cekit modules and hashing their files.

A module `NAME` is the folder `modules/NAME/` beside cpb.yaml (holding a
`module.yaml`), or else cpb's built-in `templates/modules/NAME/`. Its files
feed the input digest of every image that installs it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .errors import SpecError
from .resources import builtin_modules_dir

PROJECT_MODULES = "modules"


@dataclass(frozen=True)
class ModuleRef:
    name: str
    path: Path  # the module's folder
    label: str  # how messages and digests name it: "modules/NAME" or "builtin:NAME"


def _search_path(project_root: Path, builtin: Path | None) -> list[tuple[Path, str]]:
    return [(project_root / PROJECT_MODULES, PROJECT_MODULES),
            (builtin or builtin_modules_dir(), "builtin:")]


def find_module(name: str, project_root: Path, builtin: Path | None = None) -> ModuleRef | None:
    for folder, label in _search_path(project_root, builtin):
        candidate = folder / name
        if (candidate / "module.yaml").is_file():
            shown = f"{label}/{name}" if label == PROJECT_MODULES else f"{label}{name}"
            return ModuleRef(name=name, path=candidate, label=shown)
    return None


def known_modules(project_root: Path, builtin: Path | None = None) -> list[str]:
    names: set[str] = set()
    for folder, _ in _search_path(project_root, builtin):
        if folder.is_dir():
            names.update(p.parent.name for p in folder.glob("*/module.yaml"))
    return sorted(names)


def module_files(module: ModuleRef) -> list[tuple[str, Path]]:
    """(name shown to users, path) of every file in the module, sorted.

    A symlink must stay inside the module folder: one pointing elsewhere
    would make the image depend on files the digest cannot see coming.
    """
    root = module.path.resolve()
    files: list[tuple[str, Path]] = []
    for folder, dirs, names in os.walk(module.path):
        dirs.sort()
        for entry in [*dirs, *names]:
            full = Path(folder, entry)
            link = full.relative_to(module.path)
            if full.is_symlink():
                target = full.resolve()
                if target != root and root not in target.parents:
                    raise SpecError(f"{module.label}/{link} is a symlink to {target}, outside "
                                    "the module; copy the file into the module instead")
                if not target.exists():
                    raise SpecError(f"{module.label}/{link} is a broken symlink "
                                    f"(to {os.readlink(full)})")
        for entry in sorted(names):
            full = Path(folder, entry)
            if not full.is_file():
                # a FIFO or device would block or never end when it is hashed
                raise SpecError(f"{module.label}/{full.relative_to(module.path)} is not a "
                                "regular file; a module holds only files and folders")
            rel = full.relative_to(module.path).as_posix()
            files.append((f"{module.label}/{rel}", full))
    return files
