"""Finding cekit modules and hashing their files.

A module `NAME` is the folder `modules/NAME/` beside cpb.yaml (holding a
`module.yaml`), or else cpb's built-in `templates/modules/NAME/`. Its files
feed the input digest of every image that installs it, and so do the files
of the modules it installs in turn (`modules: {install: [...]}` in its
module.yaml), which cekit runs before it.
"""

from __future__ import annotations

import dataclasses
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from cpb.errors import SpecError
from cpb.resources import builtin_modules_dir
from cpb.spec.yamlload import load_yaml

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
    # names from `modules: {install: [...]}` in its module.yaml: cekit installs them first
    requires: tuple[str, ...] = field(default=(), compare=False, repr=False)
    # names of the modules defined in folders below this one (cekit finds them there)
    nested: tuple[str, ...] = field(default=(), compare=False, repr=False)


def read_module(module: ModuleRef) -> ModuleRef:
    """The module with its files and folders listed and its real path.

    SpecError if a file is unfit (see module_files).
    """
    real = os.path.realpath(module.path)
    folders: list[str] = []
    files = module_files(module, real, folders)
    top = module.path / "module.yaml"
    nested = tuple(name for f in files if f.path != top and f.path.name == "module.yaml"
                   for name in [_descriptor(f)[0]] if name)
    requires = next((_descriptor(f)[1] for f in files if f.path == top), ())
    return dataclasses.replace(module, files=files, real=Path(real), folders=tuple(folders),
                               requires=requires, nested=nested)


def _descriptor(file: ModuleFile) -> tuple[str | None, tuple[str, ...]]:
    """(name, names of the modules it installs) from one module.yaml.

    Only what cpb follows is read here; cekit checks the rest of the descriptor.
    """
    data = load_yaml(file.path, file.shown)  # a stranger's file: the spec's limits apply
    if not isinstance(data, dict):
        raise SpecError(f"{file.shown} is not a module descriptor (a YAML mapping)")
    name = data.get("name")
    modules = data.get("modules")
    install = modules.get("install") if isinstance(modules, dict) else None
    if install is None:
        return (name if isinstance(name, str) else None), ()
    names = ([e.get("name") if isinstance(e, dict) else None for e in install]
             if isinstance(install, list) else [None])
    if not all(isinstance(n, str) and n for n in names):
        raise SpecError(f"{file.shown}: modules.install must be a list of {{name: MODULE}} "
                        "entries")
    return (name if isinstance(name, str) else None), tuple(str(n) for n in names)


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
