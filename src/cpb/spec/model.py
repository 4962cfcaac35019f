"""cpb.yaml → a validated, immutable `ProjectSpec`.

`load_spec` is the YAML boundary: after it, every value is typed, defaults
are merged into each image, references between images are resolved and
checked for cycles, and module and artifact files are known to exist.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any
from urllib.parse import unquote, urlsplit

from cpb.errors import GraphError, SpecError
from cpb.spec.consent import HostPaths, inside, refusal
from cpb.spec.containerfile import CHECKSUM_LENGTHS
from cpb.spec.memo import SpecMemo, stat_or_none
from cpb.spec.modules import (
    ModuleRef,
    check_module,
    find_module,
    known_modules,
    read_module,
)
from cpb.spec.pods import PodSpec, build_pods
from cpb.spec.schema import FILE_NAME_PATTERN, Validator
from cpb.spec.yamlload import Located, Mark, load_yaml
from cpb.util import deep_merge, did_you_mean


@dataclass(frozen=True)
class DebootstrapSpec:
    suite: str
    variant: str = "minbase"
    include: tuple[str, ...] = ()
    components: tuple[str, ...] = ()
    mirror: str = "http://deb.debian.org/debian"


@dataclass(frozen=True)
class RootfsSpec:
    tar: Path | None = None
    debootstrap: DebootstrapSpec | None = None


@dataclass(frozen=True)
class ArtifactSpec:
    path: Path | None  # absolute, on the host; None for a `url` artifact (it is in the cache)
    rel: str  # as written (a path relative to the project, or the url): what messages use
    name: str
    target: str | None = None
    dest: str | None = None
    url: str | None = None
    # (algorithm, lower-case hex) as declared, sha256 first; required for a url
    checksums: tuple[tuple[str, str], ...] = ()
    size: int | None = None  # bytes, as declared (`size:`): a url download's exact size
    # A file cpb makes itself (the runtime's wheel): the subject of the task
    # that puts it in the artifact cache. Neither `path` nor `url` is set.
    made_by: str | None = None
    # its field path in cpb.yaml (`images.x.artifacts[0]`), for messages; "" if cpb made it
    at: str = field(default="", compare=False)

    @property
    def key(self) -> str:
        """The cache key of a declared checksum: the sha256 itself, else `<algorithm>-<hex>`."""
        algorithm, value = self.checksums[0]
        return value if algorithm == "sha256" else f"{algorithm}-{value}"


@dataclass(frozen=True)
class ImageSpec:
    name: str
    version: str = "latest"
    parent: str | None = None  # another image of this spec
    base_ref: str | None = None  # an external image reference
    rootfs: RootfsSpec | None = None
    description: str = ""
    modules: tuple[ModuleRef, ...] = ()
    packages: tuple[str, ...] = ()
    packages_manager: str = "apt-get"
    artifacts: tuple[ArtifactSpec, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    labels: tuple[tuple[str, str], ...] = ()
    ports: tuple[int, ...] = ()
    user: str | None = None
    workdir: str | None = None
    cmd: tuple[str, ...] = ()
    entrypoint: tuple[str, ...] = ()
    cekit: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True)
class RegistrySpec:
    """`registry:`: where images are pushed, and the cache every runner shares.

    No credentials here: they come from podman's auth file (see registry.py).
    """

    url: str  # host[:port][/path], no scheme
    tls_verify: bool = True

    @property
    def host(self) -> str:
        return self.url.split("/", 1)[0]

    @property
    def path(self) -> str:
        return self.url.split("/", 1)[1] if "/" in self.url else ""

    def repository(self, image: str) -> str:
        """The repository name inside the registry (`<path>/<image>`)."""
        return f"{self.path}/{image}" if self.path else image

    def ref(self, image: str, tag: str) -> str:
        """`<url>/<image>:<tag>`, as podman and skopeo name it."""
        return f"{self.url}/{image}:{tag}"


@dataclass(frozen=True)
class ProjectSpec:
    project: str
    root: Path  # the folder holding cpb.yaml
    file: Path
    images: Mapping[str, ImageSpec]  # sorted by name
    locations: Mapping[str, Mark] = field(default_factory=dict, compare=False)
    registry: RegistrySpec | None = None
    pods: Mapping[str, PodSpec] = field(default_factory=dict)  # sorted by name
    # the YAML this load validated or trusted (spec.memo.SpecMemo):
    # a run that records its work saves it for the next one
    memo: SpecMemo | None = field(default=None, compare=False, repr=False)

    def where(self, path: str) -> tuple[str, int, int]:
        mark = self.locations.get(path)
        return (str(self.file.name), mark.line if mark else 0, mark.column if mark else 0)


def load_spec(path: Path, *, builtin_modules: Path | None = None,
              host_paths: HostPaths | None = None, memo: SpecMemo | None = None) -> ProjectSpec:
    """Read, validate and normalise one cpb.yaml.

    `host_paths`: what the user allowed outside the project (default: from
    $CPB_ALLOW_HOST_PATHS); see consent.py.
    """
    path = path.resolve()
    display = path.name
    st = stat_or_none(path) if memo is not None else None
    known = memo.get(path, st) if memo is not None and st is not None else None
    locations: Mapping[str, Mark]
    if known is not None:  # [data, {field path: [line, column]}], as saved below
        data = known[0]
        locations = _SavedMarks(known[1])
    else:
        data = load_yaml(path, display)
        if data is None:
            raise SpecError("file is empty; it needs at least 'project' and 'images'",
                            file=display)
        validator = Validator(display)
        validator.validate(data)
        locations = dict(validator.locations)
        if memo is not None and st is not None:
            memo.put(path, st, [data, {k: [m.line, m.column] for k, m in locations.items()}])
    return _Builder(path, locations, builtin_modules,
                    host_paths if host_paths is not None else HostPaths.from_user(),
                    memo).build(data)


class _SavedMarks(Mapping[str, Mark]):
    """Field positions as the memo keeps them ([line, column]), a Mark made when one is
    asked for: a load asks for few or none of a big spec's thousands."""

    def __init__(self, saved: Mapping[str, list[int]]) -> None:
        self._saved = saved

    def __getitem__(self, key: str) -> Mark:
        return Mark(*self._saved[key])

    def __iter__(self) -> Iterator[str]:
        return iter(self._saved)

    def __len__(self) -> int:
        return len(self._saved)


class _Builder:
    def __init__(self, path: Path, locations: Mapping[str, Mark], builtin: Path | None,
                 host_paths: HostPaths, memo: SpecMemo | None = None) -> None:
        self.path, self.root = path, path.parent
        self.locations, self.builtin = locations, builtin
        self.host_paths = host_paths
        self.memo = memo
        self.display = path.name
        self.top = str(self.root)
        self.found_modules: dict[str, ModuleRef | None] = {}  # by name
        self.read_modules: dict[str, ModuleRef] = {}  # by name
        self.real_folders: dict[str, str] = {}
        self.links: dict[str, dict[str, bool]] = {}  # folder → {entry: is a symlink}
        self.folder_paths: dict[str, Path] = {}  # a Path made in each folder (path_object)

    def fail(self, message: str, field_path: str, cls: type[SpecError] = SpecError) -> SpecError:
        mark = self.locations.get(field_path)
        parent = field_path
        while mark is None and "." in parent:
            # inside a free-form mapping (cekit:) only the mapping has a position
            parent = parent.rsplit(".", 1)[0]
            mark = self.locations.get(parent)
        return cls(message, file=self.display, line=mark.line if mark else 0,
                   column=mark.column if mark else 0, field=field_path)

    def build(self, data: Located) -> ProjectSpec:
        defaults = data.get("defaults") or {}
        raw_images: dict[str, Any] = data["images"]
        images = {name: self.image(name, raw_images[name], defaults, raw_images)
                  for name in sorted(raw_images)}
        self.check_cycles(images)
        pods = build_pods(data, images, self.root, self.fail)
        self.check_volumes(pods)
        return ProjectSpec(project=data["project"], root=self.root, file=self.path,
                           images=MappingProxyType(images),
                           locations=MappingProxyType(self.locations),
                           registry=_registry(data.get("registry")),
                           pods=MappingProxyType(pods), memo=self.memo)

    def image(self, name: str, raw: dict[str, Any], defaults: dict[str, Any],
              all_images: dict[str, Any]) -> ImageSpec:
        at = f"images.{name}"
        parent, base_ref, rootfs = self.origin(name, raw, all_images)
        # each side was validated against the allow-list (schema.CEKIT_HATCH)
        cekit = deep_merge(defaults.get("cekit", {}), raw.get("cekit", {}))
        return ImageSpec(
            name=name,
            version=raw.get("version", "latest"),
            parent=parent, base_ref=base_ref, rootfs=rootfs,
            description=raw.get("description", ""),
            modules=self.modules(_merged_list(defaults, raw, "modules"), at),
            packages=tuple(_merged_list(defaults, raw, "packages")),
            packages_manager=raw.get("packages_manager",
                                     defaults.get("packages_manager", "apt-get")),
            artifacts=self.artifacts(defaults, raw, at),
            env=_merged_map(defaults, raw, "env"),
            labels=_merged_map(defaults, raw, "labels"),
            ports=tuple(_merged_list(defaults, raw, "ports")),
            user=_opt_str(raw.get("user", defaults.get("user"))),
            workdir=raw.get("workdir", defaults.get("workdir")),
            cmd=tuple(raw.get("cmd", defaults.get("cmd", ()))),
            entrypoint=tuple(raw.get("entrypoint", defaults.get("entrypoint", ()))),
            cekit=MappingProxyType(cekit),
        )

    def origin(self, name: str, raw: dict[str, Any], all_images: dict[str, Any]
               ) -> tuple[str | None, str | None, RootfsSpec | None]:
        at = f"images.{name}"
        has_from, has_rootfs = "from" in raw, "rootfs" in raw
        if has_from == has_rootfs:
            which = "both" if has_from else "neither"
            raise self.fail(f"give exactly one of 'from' or 'rootfs' ({which} given)", at)
        if has_rootfs:
            return None, None, self.rootfs(raw["rootfs"], f"{at}.rootfs")
        ref: str = raw["from"]
        if ref in all_images:
            return ref, None, None
        if not any(c in ref for c in "/:.@"):
            # A bare word is almost always a typo for one of our images; an
            # external image needs a tag or registry path to be unambiguous.
            hint = did_you_mean(ref, sorted(all_images))
            raise self.fail(f"'{ref}' is not an image of this spec{hint}; an external image "
                            f"needs a tag or registry, e.g. '{ref}:latest'", f"{at}.from",
                            GraphError)
        return None, ref, None

    def rootfs(self, raw: dict[str, Any], at: str) -> RootfsSpec:
        if "tar" in raw:
            return RootfsSpec(tar=self.local_file(raw["tar"], f"{at}.tar"))
        boot = raw["debootstrap"]
        return RootfsSpec(debootstrap=DebootstrapSpec(
            suite=boot["suite"], variant=boot.get("variant", "minbase"),
            include=tuple(boot.get("include", ())), components=tuple(boot.get("components", ())),
            mirror=boot.get("mirror", DebootstrapSpec.mirror)))

    def modules(self, names: list[str], at: str) -> tuple[ModuleRef, ...]:
        """The image's modules, then those they install themselves (cekit needs
        each one's folder, and its files are inputs of the image)."""
        found = [self.module(name, at) for name in names]
        seen = {m.name for m in found}
        for module in found:  # grows while it is walked: dependencies of dependencies
            for name in module.requires:
                if name not in seen:
                    seen.add(name)
                    found.append(self.module(name, at))
        return tuple(found)

    def find_module(self, name: str) -> ModuleRef | None:
        """Where module `name` is; looked for once per load, however many images name it."""
        if name not in self.found_modules:
            self.found_modules[name] = find_module(name, self.root, self.builtin)
        return self.found_modules[name]

    def module(self, name: str, at: str) -> ModuleRef:
        done = self.read_modules.get(name)
        if done is not None:
            return done
        found = self.find_module(name)
        if found is None:
            hint = did_you_mean(name, known_modules(self.root, self.builtin))
            raise self.fail(f"module '{name}' not found in modules/ or cpb's built-in "
                            f"modules{hint}", f"{at}.modules")
        try:
            # symlinks leaving the module, FIFOs: refused with a line
            module = read_module(found, self.real_module_path(found.path))
        except SpecError as exc:
            raise self.fail(exc.reason, f"{at}.modules") from None
        if found.label.startswith("modules/"):
            assert module.real is not None
            if not self.inside_project(module.real):
                raise self.fail(refusal(f"module '{name}' is a link to", module.real),
                                f"{at}.modules")
        done = self.read_modules[name] = check_module(
            module, self.host_paths, lambda other: self.find_module(other) is not None,
            self.memo)
        return done

    def inside_project(self, real: str | Path) -> bool:
        """`real` (symlinks resolved) is in the project, or the user allowed it."""
        return inside(real, self.top) or self.host_paths.allows(Path(real))

    def check_volumes(self, pods: Mapping[str, PodSpec]) -> None:
        for name, pod in pods.items():
            for index, container in enumerate(pod.containers):
                for number, volume in enumerate(container.volumes):
                    if volume.host_path is not None and not self.inside_project(
                            volume.host_path):
                        raise self.fail(
                            refusal("the host folder", volume.host_path),
                            f"pods.{name}.containers[{index}].volumes[{number}].host")

    def local_file(self, written: str, at: str) -> Path:
        path, mode = self.real_path(os.path.join(self.top, written))
        if not self.inside_project(path):
            raise self.fail(refusal("the file", path), at)
        if mode is None:
            try:
                mode = os.stat(path).st_mode
            except OSError:
                mode = 0
        if stat.S_ISDIR(mode):
            raise self.fail(f"{written} is a folder; give a file", at)
        if not stat.S_ISREG(mode):
            raise self.fail(f"file not found: {written}", at)
        return self.path_object(path)

    def path_object(self, real: str) -> Path:
        """`Path(real)`, made from a sibling's Path when there is one: pathlib parses the
        whole string otherwise, and hundreds of artifacts share a folder."""
        folder, _, name = real.rpartition(os.sep)
        if not folder or name in ("", ".", ".."):
            return Path(real)
        sibling = self.folder_paths.get(folder)
        if sibling is None:
            made = self.folder_paths[folder] = Path(real)
            return made
        return sibling.with_name(name)

    def real_path(self, path: str) -> tuple[str, int | None]:
        """`os.path.realpath(path)`, with each folder resolved once: hundreds of
        artifacts share a few folders, all modules share modules/, and resolving
        walks every component of the path. Also the file's mode (stat's
        st_mode) when the one lstat that shows it is no symlink told it."""
        folder, _, name = path.rpartition(os.sep)
        if not folder or name in ("", ".", ".."):
            return os.path.realpath(path), None
        try:
            mode: int | None = os.lstat(path).st_mode
        except OSError:
            mode = None  # the caller asks stat, and says what is wrong
        if mode is not None and stat.S_ISLNK(mode):
            return os.path.realpath(path), None
        return self.in_real_folder(folder, name), mode

    def in_real_folder(self, folder: str, name: str) -> str:
        """`os.path.realpath(folder)/name`, the folder resolved once."""
        real = self.real_folders.get(folder)
        if real is None:
            real = self.real_folders[folder] = os.path.realpath(folder)
        return f"{real}{os.sep}{name}" if real != os.sep else f"{os.sep}{name}"

    def real_module_path(self, path: str) -> str:
        """`os.path.realpath` of a module's folder. Its folder (modules/, cpb's
        built-in modules) is listed once, and its entries say which are symlinks
        without a system call each (DirEntry.is_symlink)."""
        folder, _, name = path.rpartition(os.sep)
        links = self.links.get(folder)
        if links is None:
            try:
                with os.scandir(folder) as listing:
                    links = {entry.name: entry.is_symlink() for entry in listing}
            except OSError:
                links = {}  # each module is asked on its own
            self.links[folder] = links
        link = links.get(name)
        if link is None:  # not listed (or no longer there): ask its own lstat
            return self.real_path(path)[0]
        return os.path.realpath(path) if link else self.in_real_folder(folder, name)

    def artifacts(self, defaults: dict[str, Any], raw: dict[str, Any],
                  at: str) -> tuple[ArtifactSpec, ...]:
        result: list[ArtifactSpec] = []
        seen: dict[str, str] = {}
        for section, entries in (("defaults", defaults.get("artifacts", [])),
                                 (at, raw.get("artifacts", []))):
            for index, entry in enumerate(entries):
                where = f"{section}.artifacts[{index}]"
                artifact = self.artifact(entry, where)
                if artifact.name in seen:
                    raise self.fail(f"artifact name '{artifact.name}' is already used by "
                                    f"{seen[artifact.name]}", where)
                seen[artifact.name] = where
                result.append(artifact)
        return tuple(result)

    def artifact(self, entry: dict[str, Any], where: str) -> ArtifactSpec:
        if ("path" in entry) == ("url" in entry):
            which = "both" if "path" in entry else "neither"
            raise self.fail(f"give exactly one of 'path' or 'url' ({which} given)", where)
        checksums = tuple((algorithm, entry[algorithm].lower())
                          for algorithm in CHECKSUM_LENGTHS if algorithm in entry)
        target, dest = entry.get("target"), entry.get("dest")
        if "path" in entry:
            if "size" in entry:
                raise self.fail("'size' is for url artifacts (the most a download may "
                                "bring); a local file is hashed as it is", f"{where}.size")
            path = self.local_file(entry["path"], f"{where}.path")
            name = entry.get("name", path.name)
            if not _FILE_NAME.search(name):
                # cekit writes it into a COPY line unquoted
                raise self.fail(f"cannot use {name!r} as the artifact's file name; add "
                                "'name: ...'", where)
            return ArtifactSpec(path=path, rel=entry["path"], name=name,
                                target=target, dest=dest, checksums=checksums, at=where)
        url: str = entry["url"]
        try:
            port = urlsplit(url).port
        except ValueError:
            port = 0
        if port == 0:
            raise self.fail(f"{url!r} has a port that is not 1-65535", f"{where}.url")
        if not checksums:
            raise self.fail("a url artifact needs its checksum: add 'sha256: ...' "
                            "(`cpb artifact add URL` prints it)", where)
        name = entry.get("name") or url_file_name(url)
        if not _FILE_NAME.search(name):
            raise self.fail(f"cannot take a file name from {url!r}; add 'name: ...'", where)
        return ArtifactSpec(path=None, rel=url, name=name, url=url, target=target, dest=dest,
                            checksums=checksums, size=entry.get("size"), at=where)

    def check_cycles(self, images: Mapping[str, ImageSpec]) -> None:
        state: dict[str, int] = {}  # 1 = on the current path, 2 = done
        for start in images:
            path: list[str] = []
            node: str | None = start
            while node is not None and state.get(node) is None:
                state[node] = 1
                path.append(node)
                node = images[node].parent
            if node is not None and state[node] == 1:
                cycle = path[path.index(node):] + [node]
                raise self.fail("images built from each other form a cycle: "
                                + " -> ".join(cycle), f"images.{cycle[0]}.from", GraphError)
            for done in path:
                state[done] = 2


_FILE_NAME = re.compile(FILE_NAME_PATTERN)


def url_file_name(url: str) -> str:
    """The last segment of a URL's path, unquoted: the artifact's default name."""
    return unquote(urlsplit(url).path.rstrip("/").rpartition("/")[2])
def _registry(raw: dict[str, Any] | None) -> RegistrySpec | None:
    if raw is None:
        return None
    return RegistrySpec(url=raw["url"].rstrip("/"), tls_verify=raw.get("tls_verify", True))


def _merged_list(defaults: dict[str, Any], raw: dict[str, Any], key: str) -> list[Any]:
    """Defaults first, then the image's own; duplicates dropped, order kept."""
    return list(dict.fromkeys([*defaults.get(key, []), *raw.get(key, [])]))


def _merged_map(defaults: dict[str, Any], raw: dict[str, Any],
                key: str) -> tuple[tuple[str, str], ...]:
    merged = {**defaults.get(key, {}), **raw.get(key, {})}
    return tuple(sorted((k, _scalar_text(v)) for k, v in merged.items()))


def _scalar_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)
