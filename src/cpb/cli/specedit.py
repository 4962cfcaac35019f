"""`cpb artifact add --write`: insert an artifact into cpb.yaml, keeping the file.

The new lines are inserted as text at positions found by parsing the file
(PyYAML's node tree knows where every key and value starts and ends), so no
other line of the user's file changes: comments, blank lines, key order,
quotes, flow styles and indentation stay exactly as they were. (A round-trip
dump with ruamel.yaml was tried first: it re-spaced comments after flow
collections and re-indented 4-space files.) The result must load as a valid
spec with the new entry where it was meant to go; otherwise cpb.yaml is left
untouched and the entry stays printed for the user to paste.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import yaml

from cpb.errors import SpecError
from cpb.spec.model import load_spec, url_file_name
from cpb.util import did_you_mean


class CannotEdit(SpecError):
    """The entry could not be inserted by adding lines only."""


def check_new_artifact(spec_file: Path, name: str, image: str | None) -> None:
    """SpecError unless an artifact `name` can go under `image` (or defaults)."""
    spec = load_spec(spec_file)  # a spec that is wrong already is not edited
    if image is not None and image not in spec.images:
        raise SpecError(f"no image '{image}' in {spec_file.name}"
                        f"{did_you_mean(image, sorted(spec.images))}")
    users = [image] if image is not None else sorted(spec.images)
    for user in users:
        if any(a.name == name for a in spec.images[user].artifacts):
            raise SpecError(f"image {user} already has an artifact named '{name}' in "
                            f"{spec_file.name}; remove it first, or give --name")


def add_artifact(spec_file: Path, entry: dict[str, str], image: str | None) -> str:
    """Insert `entry` into `defaults.artifacts` or `images.IMAGE.artifacts`; the field path."""
    name = entry.get("name") or url_file_name(entry["url"])
    check_new_artifact(spec_file, name, image)
    text = spec_file.read_text()
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    if not isinstance(root, yaml.MappingNode):
        raise CannotEdit(f"{spec_file.name} is not a mapping")
    path = f"images.{image}.artifacts" if image else "defaults.artifacts"
    if image is None and _get(root, "defaults") is None:
        at, new = _insert_defaults(root, lines, entry)
    else:
        owner = _get(_get(root, "images"), image) if image else _get(root, "defaults")
        at, new = _insert_into(owner, lines, entry, path)
    lines[at:at] = new
    _replace_checked(spec_file, "".join(lines), image, name)
    return path


def _get(mapping: yaml.Node | None, key: str | None) -> yaml.Node | None:
    if not isinstance(mapping, yaml.MappingNode):
        return None
    for k, v in mapping.value:
        if isinstance(k, yaml.ScalarNode) and k.value == key:
            return v  # type: ignore[no-any-return]
    return None


def _last_line(node: yaml.Node) -> int:
    """The 0-based line where `node`'s own text ends (a block collection's
    end mark lies past the comments that follow it: look at its last child)."""
    if isinstance(node, yaml.MappingNode) and node.flow_style is False and node.value:
        return _last_line(node.value[-1][1])
    if isinstance(node, yaml.SequenceNode) and node.flow_style is False and node.value:
        return _last_line(node.value[-1])
    end = node.end_mark
    # a block scalar (|, >) ends at the start of the line after its text
    return int(end.line - 1 if end.column == 0 and end.line > node.start_mark.line
               else end.line)


def _item_lines(entry: dict[str, str], dash: int, content: int) -> list[str]:
    """`- url: ...` and its other keys, the dash at column `dash`, keys at `content`."""
    fields = [f"{k}: {json.dumps(v) if k in ('url', 'name') else v}" for k, v in entry.items()]
    first = " " * dash + "-" + " " * (content - dash - 1) + fields[0] + "\n"
    return [first, *(" " * content + f + "\n" for f in fields[1:])]


def _insert_into(owner: yaml.Node | None, lines: list[str], entry: dict[str, str],
                 path: str) -> tuple[int, list[str]]:
    """(line index, new lines) adding `entry` to `owner`'s artifacts."""
    where = path.rsplit(".", 1)[0]
    if not isinstance(owner, yaml.MappingNode) or owner.flow_style is not False \
            or not owner.value:
        raise CannotEdit(f"{where} is not a block mapping (written {{...}} on one line?); "
                         "add the entry printed above by hand")
    artifacts = _get(owner, "artifacts")
    if artifacts is None:
        key_column = owner.value[0][0].start_mark.column
        at = _last_line(owner) + 1
        return at, [" " * key_column + "artifacts:\n",
                    *_item_lines(entry, key_column + 2, key_column + 4)]
    if not isinstance(artifacts, yaml.SequenceNode) or artifacts.flow_style is not False \
            or not artifacts.value:
        raise CannotEdit(f"{path} is not a block list (written [...] on one line?); "
                         "add the entry printed above by hand")
    last = artifacts.value[-1]
    content = last.start_mark.column
    line = lines[last.start_mark.line]
    dash = line.rfind("-", 0, content)
    if dash < 0:
        raise CannotEdit(f"cannot find the list's '-' in {path}; add the entry by hand")
    return _last_line(artifacts) + 1, _item_lines(entry, dash, content)


def _insert_defaults(root: yaml.MappingNode, lines: list[str],
                     entry: dict[str, str]) -> tuple[int, list[str]]:
    """A new `defaults:` section with the entry, before `images:` (after the key
    before it, so comments that lead into `images:` stay with it)."""
    keys = [k.value for k, _ in root.value]
    index = keys.index("images") if "images" in keys else len(keys)
    at = _last_line(root.value[index - 1][1]) + 1 if index else 0
    return at, ["defaults:\n", "  artifacts:\n", *_item_lines(entry, 4, 6)]


def _replace_checked(spec_file: Path, text: str, image: str | None, name: str) -> None:
    """Write `text` as the spec only if it loads with the new artifact in place; a
    temporary file beside it is checked first (relative paths resolve the same)."""
    fd, tmp = tempfile.mkstemp(dir=spec_file.parent, prefix=f".{spec_file.name}.",
                               suffix=".yaml")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        try:
            spec = load_spec(Path(tmp))
        except SpecError as exc:
            raise CannotEdit(f"the edited {spec_file.name} would not be valid ({exc.reason}); "
                             "left unchanged") from None
        for user in [image] if image else list(spec.images):
            if name not in [a.name for a in spec.images[user].artifacts]:
                raise CannotEdit(f"the entry would not land in {user}'s artifacts; "
                                 f"{spec_file.name} left unchanged")
        os.chmod(tmp, spec_file.stat().st_mode & 0o7777)
        os.replace(tmp, spec_file)
    finally:
        Path(tmp).unlink(missing_ok=True)
