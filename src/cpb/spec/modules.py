"""Finding cekit modules and hashing their files.

A module `NAME` is the folder `modules/NAME/` beside cpb.yaml (holding a
`module.yaml`), or else cpb's built-in `templates/modules/NAME/`. Its files
feed the input digest of every image that installs it.
"""

from __future__ import annotations

import dataclasses
import os
import re
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from operator import attrgetter
from pathlib import Path
from typing import Any

from cpb.errors import SpecError
from cpb.resources import builtin_modules_dir
from cpb.spec.consent import HostPaths, refusal
from cpb.spec.containerfile import (
    CHECKSUM_LENGTHS,
    MODULE_SCHEMA,
    SAFE_FILE_MESSAGE,
    SAFE_FILE_NAME,
)
from cpb.spec.memo import SpecMemo, stat_or_none
from cpb.spec.schema import Validator
from cpb.spec.yamlload import Mark, load_yaml

PROJECT_MODULES = "modules"
MODULE_FILE = "module.yaml"


@dataclass(frozen=True)
class ModuleFile:
    shown: str  # "modules/NAME/rel/path": how messages and digests name it
    # absolute; a string, not a Path: a big spec lists thousands of module files
    path: str
    stat: os.stat_result = field(compare=False, repr=False)  # taken when the module was read


@dataclass(frozen=True)
class ModuleRef:
    name: str
    path: str  # the module's folder (strings, not Paths: a big spec has thousands of these)
    label: str  # how messages and digests name it: "modules/NAME" or "builtin:NAME"
    # Filled in when the spec is loaded (read_module), so each module
    # folder is walked once per run however many images install it.
    files: tuple[ModuleFile, ...] = field(default=(), compare=False, repr=False)
    real: str | None = field(default=None, compare=False, repr=False)  # symlinks resolved
    folders: tuple[str, ...] = field(default=(), compare=False, repr=False)  # below path
    requires: tuple[str, ...] = field(default=(), compare=False, repr=False)  # it installs


def read_module(module: ModuleRef, real: str | None = None) -> ModuleRef:
    """The module with its files and folders listed and its real path.

    `real`: `os.path.realpath(module.path)`, when the caller knows it.
    SpecError if a file is unfit (see module_files).
    """
    real = real or os.path.realpath(module.path)
    folders: list[str] = []
    files = module_files(module, real, folders)
    return dataclasses.replace(module, files=files, real=real, folders=tuple(folders))


def _search_path(project_root: Path, builtin: Path | None) -> list[tuple[Path, str]]:
    return [(project_root / PROJECT_MODULES, PROJECT_MODULES),
            (builtin or builtin_modules_dir(), "builtin:")]


def find_module(name: str, project_root: Path, builtin: Path | None = None) -> ModuleRef | None:
    # strings, not Paths: a spec of hundreds of images asks this for every module it names
    for folder, label in ((os.path.join(project_root, PROJECT_MODULES), PROJECT_MODULES),
                          (builtin or builtin_modules_dir(), "builtin:")):
        candidate = os.path.join(folder, name)
        if os.path.isfile(f"{candidate}/{MODULE_FILE}"):
            shown = f"{label}/{name}" if label == PROJECT_MODULES else f"{label}{name}"
            return ModuleRef(name=name, path=candidate, label=shown)
    return None


def known_modules(project_root: Path, builtin: Path | None = None) -> list[str]:
    names: set[str] = set()
    for folder, _ in _search_path(project_root, builtin):
        if folder.is_dir():
            names.update(p.parent.name for p in folder.glob("*/module.yaml"))
    return sorted(names)


_by_name = attrgetter("name")  # DirEntry's, to list a folder in a stable order


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
            entries = sorted(listing, key=_by_name)
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
            files.append(ModuleFile(f"{module.label}/{link}", entry.path, info))

    walk(module.path, "")
    return tuple(files)


def check_module(module: ModuleRef, host_paths: HostPaths,
                 exists: Callable[[str], bool], memo: SpecMemo | None = None) -> ModuleRef:
    """Validate the module's module.yaml like cpb.yaml: schema, positions, one-line errors.

    cekit pastes its values into the Containerfile, reads its artifacts on
    the host and renders help templates, so a module.yaml is as much input
    as cpb.yaml. Returns the module with the modules it installs itself
    (`requires`) and any host file it copies (with the user's consent) among
    its files, so that they are part of the input digest.
    """
    display = f"{module.label}/{MODULE_FILE}"
    file = f"{module.path}/{MODULE_FILE}"
    st = _listed_stat(module, display, file) if memo is not None else None
    known = memo.get(file, st) if memo is not None and st is not None else None
    if known is not None:
        try:
            return _checked(module, known, {}, host_paths, exists)
        except SpecError:
            pass  # parsed again below, so that the message has its line and column
    data = load_yaml(Path(file), display)
    if data is None:
        raise SpecError("file is empty; a module needs at least 'name' and 'version'",
                        file=display)
    validator = Validator(display, MODULE_SCHEMA)
    validator.validate(data)
    checked = _checked(module, data, validator.locations, host_paths, exists)
    if memo is not None and st is not None:
        memo.put(file, st, data)
    return checked


def _listed_stat(module: ModuleRef, shown: str, file: str) -> os.stat_result | None:
    """module.yaml's stat as read_module took it (one stat a module fewer), else a fresh one."""
    for listed in module.files:
        if listed.shown == shown:
            return listed.stat
    return stat_or_none(file)


def _checked(module: ModuleRef, data: Any, locations: Mapping[str, Mark],
             host_paths: HostPaths, exists: Callable[[str], bool]) -> ModuleRef:
    """The checks of a module.yaml after its schema (`locations`: where each field is)."""
    display = f"{module.label}/{MODULE_FILE}"

    def fail(message: str, field_path: str) -> SpecError:
        mark = locations.get(field_path)
        return SpecError(message, file=display, line=mark.line if mark else 0,
                         column=mark.column if mark else 0, field=field_path)

    if data["name"] != module.name:
        raise fail(f"the module is named '{data['name']}' but its folder is "
                   f"'{module.name}'; cekit finds modules by name, so they must be the same",
                   "name")
    top = len(module.label) + 1
    rels = {f.shown[top:] for f in module.files}
    below = f"/{MODULE_FILE}"
    nested = [rel for rel in rels if rel.endswith(below)]
    if nested:
        raise SpecError(f"{module.label}/{min(nested)}: a module holds one {MODULE_FILE}; "
                        "cekit would load this one as another module", file=display)
    for index, step in enumerate(data.get("execute", [])):
        if step["script"] not in rels:
            raise fail(f"script not found in the module: {step['script']}",
                       f"execute[{index}].script")
    extra: list[ModuleFile] = []
    for index, entry in enumerate(data.get("artifacts", [])):
        def at(message: str, field_path: str, index: int = index) -> SpecError:
            return fail(message, f"artifacts[{index}]{field_path}")

        host_file = _module_artifact(module, entry, rels, host_paths, at)
        if host_file is not None:
            extra.append(host_file)
    requires = []
    for index, entry in enumerate((data.get("modules") or {}).get("install", [])):
        if not exists(entry["name"]):
            raise fail(f"module '{entry['name']}' not found in modules/ or cpb's built-in "
                       "modules", f"modules.install[{index}].name")
        requires.append(entry["name"])
    if not extra and tuple(requires) == module.requires:
        return module  # nothing to add (most modules): the same value, not a copy
    return dataclasses.replace(module, files=module.files + tuple(extra),
                               requires=tuple(requires))


def _module_artifact(module: ModuleRef, entry: dict[str, str], rels: set[str],
                     host_paths: HostPaths,
                     fail: Callable[[str, str], SpecError]) -> ModuleFile | None:
    """Check one artifact of a module; a host file it may copy is returned for the digest."""
    if ("path" in entry) == ("url" in entry):
        which = "both" if "path" in entry else "neither"
        raise fail(f"give exactly one of 'path' or 'url' ({which} given)", "")
    source = entry.get("path") or entry["url"].rstrip("/")
    name = entry.get("name") or source.rsplit("/", 1)[-1]
    if not re.search(SAFE_FILE_NAME, name) or not re.search(SAFE_FILE_NAME,
                                                             entry.get("target", name)):
        raise fail(f"cannot use {name!r} as the artifact's file name; add 'name: ...' "
                   f"({SAFE_FILE_MESSAGE})", "")
    if "url" in entry:
        if not any(algorithm in entry for algorithm in CHECKSUM_LENGTHS):
            raise fail("a url artifact needs its checksum: add 'sha256: ...'", "")
        return None
    path: str = entry["path"]
    if not os.path.isabs(path):
        # cekit reads it from its copy of the module folder: it must be a file of the module
        if path not in rels:
            where = "outside the module" if ".." in path.split("/") else "not a file of the module"
            raise fail(f"{path} is {where}; a module artifact's path is relative to the "
                       "module folder", ".path")
        return None
    real = Path(os.path.realpath(path))
    if not host_paths.allows(real):
        raise fail(refusal("the artifact", real), ".path")
    if not real.is_file():
        raise fail(f"file not found: {path}", ".path")
    return ModuleFile(f"{module.label}/artifact:{name}", str(real), real.stat())
