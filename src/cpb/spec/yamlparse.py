"""PyYAML's side of cpb.spec.yamlload: the loader that keeps positions, and the
parse with its limits and one-line errors. Imported only when a file is parsed."""

from __future__ import annotations

from typing import Any

import yaml

from cpb.errors import SpecError
from cpb.spec.located import MAX_EXPANDED_BYTES, MAX_NODES, Located, LocatedList, Mark

try:  # libyaml's scanner is several times faster; fall back to pure Python
    _Base: type = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - depends on the PyYAML build
    _Base = yaml.SafeLoader


class _Loader(_Base):  # type: ignore[misc]
    pass


def _mark(node: yaml.Node) -> Mark:
    return Mark(node.start_mark.line + 1, node.start_mark.column + 1)


def _expanded_size(node: yaml.Node, memo: dict[int, tuple[int, int]]) -> tuple[int, int]:
    """(nodes, bytes of scalar text) once every alias is expanded (memoised per node)."""
    key = id(node)
    if key not in memo:
        memo[key] = (1, 0)  # guards against recursive aliases while we descend
        if isinstance(node, yaml.ScalarNode):
            memo[key] = (1, len(node.value))
            return memo[key]
        children: list[yaml.Node] = []
        if isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        sizes = [_expanded_size(c, memo) for c in children]
        memo[key] = (1 + sum(n for n, _ in sizes), sum(b for _, b in sizes))
    return memo[key]


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> Located:
    loader.flatten_mapping(node)
    result = Located()
    result.mark = _mark(node)
    result.key_marks, result.value_marks = {}, {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, str):
            raise yaml.MarkedYAMLError(
                problem=f"keys must be strings, not {type(key).__name__} {key!r}",
                problem_mark=key_node.start_mark)
        if key in result:
            first = result.key_marks[key]
            raise yaml.MarkedYAMLError(
                problem=f"duplicate key '{key}' (first at line {first.line})",
                problem_mark=key_node.start_mark)
        result[key] = loader.construct_object(value_node, deep=True)
        result.key_marks[key] = _mark(key_node)
        result.value_marks[key] = _mark(value_node)
    return result


def _construct_sequence(loader: _Loader, node: yaml.SequenceNode) -> LocatedList:
    result = LocatedList(loader.construct_object(child, deep=True) for child in node.value)
    result.mark = _mark(node)
    result.item_marks = [_mark(child) for child in node.value]
    return result


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)


def parse(text: str, name: str) -> Any:
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        # Only aliases can make a document bigger than its text: no '*', no alias.
        if "*" in text:
            nodes, size = _expanded_size(node, {})
            if nodes > MAX_NODES:
                raise SpecError(f"document expands to more than {MAX_NODES} nodes "
                                "through aliases (a YAML bomb?)", file=name)
            if size > MAX_EXPANDED_BYTES:
                raise SpecError(f"document expands to {size} bytes of text through aliases, "
                                f"over the limit of {MAX_EXPANDED_BYTES} (a YAML bomb?)",
                                file=name)
        data = loader.construct_document(node)
        if "\\" in text:  # a NUL can only come from an escape: "\0", "\x00", "\u0000"
            _refuse_nul(data, name)
        return data
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or "invalid YAML"
        if exc.context and exc.context not in problem:
            problem = f"{exc.context}: {problem}"
        if mark is None:
            raise SpecError(problem, file=name) from None
        if _char_at(text, mark.line, mark.column) == "\t":
            problem = "a tab character; YAML indentation must use spaces"
        raise SpecError(problem, file=name, line=mark.line + 1,
                        column=mark.column + 1) from None
    except yaml.reader.ReaderError as exc:
        line, column = _line_column(text, exc.position)
        char = exc.character
        shown = f"U+{char:04X}" if isinstance(char, int) else repr(char)
        raise SpecError(f"{exc.reason} ({shown}); cpb.yaml must be plain text",
                        file=name, line=line, column=column) from None
    except yaml.YAMLError as exc:
        raise SpecError(str(exc).splitlines()[0], file=name) from None
    except RecursionError:
        raise SpecError("document nested too deeply", file=name) from None
    finally:
        loader.dispose()


def _line_column(text: str, position: int) -> tuple[int, int]:
    before = text[:position]
    return before.count("\n") + 1, position - (before.rfind("\n") + 1) + 1


def _char_at(text: str, line: int, column: int) -> str:
    lines = text.splitlines()
    if line < len(lines) and column < len(lines[line]):
        return lines[line][column]
    return ""


def _refuse_nul(data: Any, name: str) -> None:
    """A NUL in any key or value is refused where it is: no file name, argument or
    environment value can hold one (the operating system would stop at it, or
    Python refuse it with a traceback)."""
    stack = [data]
    while stack:
        value = stack.pop()
        if isinstance(value, Located):
            for key, item in value.items():
                if "\0" in key:
                    raise _nul(name, value.key_marks[key], "a key")
                if isinstance(item, str) and "\0" in item:
                    raise _nul(name, value.value_marks[key], f"the value of '{key}'")
                stack.append(item)
        elif isinstance(value, LocatedList):
            for mark, item in zip(value.item_marks, value, strict=True):
                if isinstance(item, str) and "\0" in item:
                    raise _nul(name, mark, "a list item")
                stack.append(item)


def _nul(name: str, mark: Mark, what: str) -> SpecError:
    return SpecError(f"a NUL character (\\0) in {what}; no name, path or text here may hold one",
                     file=name, line=mark.line, column=mark.column)

