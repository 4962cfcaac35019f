"""Finding cekit modules and hashing their files.

A module `NAME` is the folder `modules/NAME/` beside cpb.yaml (holding a
`module.yaml`), or else cpb's built-in `templates/modules/NAME/`. Its files
feed the input digest of every image that installs it.
"""

from __future__ import annotations

import dataclasses
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from cpb.errors import SpecError
from cpb.resources import builtin_modules_dir

PROJECT_MODULES = "modules"


@dataclass(frozen=True)
class ModuleFile:
    shown: str  # "modules/NAME/rel/path": how messages and digests name it
    path: Path
    stat: os.stat_result = field(compare=False, repr=False)  # taken when the module was read


@dataclass(frozen=True)
class ModuleRef:
    name: str
    path: Path  # the module's folder
    label: str  # how messages and digests name it: "modules/NAME" or "builtin:NAME"
    # Filled in when the spec is loaded (read_module), so each module
    # folder is walked once per run however many images install it.
    files: tuple[ModuleFile, ...] = field(default=(), compare=False, repr=False)
    real: Path | None = field(default=None, compare=False, repr=False)  # symlinks resolved
    folders: tuple[str, ...] = field(default=(), compare=False, repr=False)  # below path


def read_module(module: ModuleRef) -> ModuleRef:
    """The module with its files and folders listed and its real path.

    SpecError if a file is unfit (see module_files).
    """
    real = os.path.realpath(module.path)
    folders: list[str] = []
    files = module_files(module, real, folders)
    return dataclasses.replace(module, files=files, real=Path(real), folders=tuple(folders))


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


def module_files(module: ModuleRef, root: str | None = None,
                 folders: list[str] | None = None) -> tuple[ModuleFile, ...]:
    """Every file in the module, with its stat.

    A symlink must stay inside the module folder: one pointing elsewhere
    would make the image depend on files the digest cannot see coming.
    A symlink to a folder inside the module is not followed (the folder's
    files are counted where they are).
    """
    root = root or os.path.realpath(module.path)
    files: list[ModuleFile] = []

    def walk(folder: str, rel: str) -> None:
        with os.scandir(folder) as listing:
            entries = sorted(listing, key=lambda e: e.name)
        for entry in entries:
            link = rel + entry.name
            if entry.is_symlink():
                target = os.path.realpath(entry.path)
                if target != root and not target.startswith(root + os.sep):
                    raise SpecError(f"{module.label}/{link} is a symlink to {target}, outside "
                                    "the module; copy the file into the module instead")
                if not os.path.exists(target):
                    raise SpecError(f"{module.label}/{link} is a broken symlink "
                                    f"(to {os.readlink(entry.path)})")
            if entry.is_dir():
                if not entry.is_symlink():
                    if folders is not None:
                        folders.append(entry.path)
                    walk(entry.path, link + "/")
                continue
            info = entry.stat()
            if not stat.S_ISREG(info.st_mode):
                # a FIFO or device would block or never end when it is hashed
                raise SpecError(f"{module.label}/{link} is not a regular file; a module "
                                "holds only files and folders")
            files.append(ModuleFile(f"{module.label}/{link}", Path(entry.path), info))

    walk(str(module.path), "")
    return tuple(files)
