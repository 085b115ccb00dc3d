"""Read YAML safely into plain data while remembering where every value came from.

PyYAML's composer gives nodes with marks; this module turns them into dicts, lists and scalars
and a :class:`Locations` map from each value's path to its position and raw spelling, so that
every later error can point at file:line:column. Only the safe constructors are used.
"""
from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any

import yaml

#: Largest YAML file accepted, in bytes.
MAX_FILE_BYTES = 1_000_000
#: Most values one file may expand to (guards against alias bombs).
MAX_VALUES = 200_000
#: Deepest nesting of mappings and lists accepted (a policy file needs about six levels).
MAX_DEPTH = 64

Path_ = tuple[object, ...]
#: Path element naming a mapping key itself: ``path + (key, KEY)`` is where ``key`` is written.
KEY = object()


@dataclass(frozen=True)
class Spot:
    """Where a scalar or collection starts, and for scalars its raw text and quoting style."""

    line: int
    column: int
    raw: str | None = None
    style: str | None = None


class YamlError(Exception):
    """The text is not acceptable YAML; ``line`` and ``column`` are 1-based."""

    def __init__(self, message: str, line: int = 1, column: int = 1, code: str = "E-yaml") -> None:
        super().__init__(message)
        self.message, self.line, self.column, self.code = message, line, column, code


class Locations(dict[Path_, Spot]):
    """Maps a path such as ``("rules", 0, "when")`` to its :class:`Spot`."""

    def find(self, path: Path_) -> Spot:
        """The spot of ``path`` or of its nearest located ancestor."""
        path = tuple(path)
        while path not in self and path:
            path = path[:-1]
        return self.get(path, Spot(1, 1))


_CONSTRUCTOR = yaml.constructor.SafeConstructor()
#: libyaml's parser when PyYAML was built with it (about ten times faster), else the Python one.
_FAST_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_STR = "tag:yaml.org,2002:str"


def _compose(text: str) -> yaml.Node | None:
    """Compose with the fast parser; on any error compose again with the Python parser, so that
    problems are worded and located exactly as before."""
    try:
        return yaml.compose(text, Loader=_FAST_LOADER)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        if getattr(exc, "problem", None) == "exceeded maximum nesting depth" and mark:
            # libyaml's own limit; Python's parser would recurse for seconds to the same end
            raise YamlError("YAML nests too deeply", mark.line + 1, mark.column + 1, "E-yaml-too-deep") from None
        return yaml.compose(text, Loader=yaml.SafeLoader)


def _scalar(node: yaml.ScalarNode) -> Any:
    if node.tag == _STR:  # most scalars: the constructor would return the text itself
        return node.value
    try:
        value = _CONSTRUCTOR.construct_object(node, deep=True)
    except (ValueError, yaml.constructor.ConstructorError):
        return node.value  # e.g. an impossible date: keep the text, later checks will say why
    finally:
        _CONSTRUCTOR.constructed_objects.pop(node, None)  # else the shared constructor keeps every node
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, bytes):
        return node.value
    return value


def check_size(size: int) -> None:
    """Raise :class:`YamlError` when a file of ``size`` bytes passes :data:`MAX_FILE_BYTES`."""
    if size > MAX_FILE_BYTES:
        raise YamlError(f"file is larger than the limit of {MAX_FILE_BYTES} bytes", code="E-file-too-large")


def load_yaml(text: str) -> tuple[Any, Locations]:
    """Parse one YAML document into plain data and its locations; raise :class:`YamlError`."""
    check_size(len(text.encode("utf-8", "replace")))
    try:
        node = _compose(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise YamlError(_explained(exc), (mark.line + 1) if mark else 1, (mark.column + 1) if mark else 1) from None
    except yaml.YAMLError as exc:
        raise YamlError(str(exc)) from None
    except RecursionError:
        raise YamlError("YAML nests too deeply", code="E-yaml-too-deep") from None
    locations = Locations()
    if node is None:
        return None, locations
    try:
        _check_expansion(node)
        data = _convert(node, (), locations)
    except RecursionError:
        raise YamlError("YAML nests too deeply", code="E-yaml-too-deep") from None
    return data, locations


#: The common YAML mistakes: (pattern of PyYAML's "context problem" text, what happened, how to fix it).
#: ``{start}`` is where the construct that failed starts, ``{0}`` the pattern's first group.
_MISTAKES: tuple[tuple[re.Pattern[str], str, str], ...] = tuple((re.compile(pattern), what, fix) for pattern, what, fix in (
    (r"mapping values are not allowed here", "a ': ' where no key can start",
     'quote a value that contains ": " (reason: "Note: ..."), or indent this key like the keys above it'),
    (r"block (collection|mapping) expected <block end>, but found '(<block mapping start>|\?)'",
     "this line is indented differently from the lines above it",
     "give the entries of one mapping or list the same indentation (it starts at {start})"),
    (r"block mapping expected <block end>, but found '-'", "a list item where a key was expected",
     "indent the '-' items under their key"),
    (r"block mapping expected <block end>, but found '<scalar>'", "more text after a value",
     "quote the whole value (in single quotes, write an apostrophe twice: 'it''s')"),
    (r"found character '\\t' that cannot start any token", "a tab character", "indent with spaces, YAML does not allow tabs"),
    (r"found character '(.)' that cannot start any token", "a value cannot start with '{0}'", "quote the value"),
    (r"(alias expected alphabetic or numeric character|found undefined alias)", "'*' starts an alias in YAML",
     "quote a value that starts with '*' or '&' (\"*\")"),
    (r"quoted scalar found unexpected end of stream", "a quoted value is never closed",
     "add the closing quote to the value that starts at {start}"),
    (r"flow sequence expected ',' or '\]'", "a [ ... ] list is not closed, or misses a comma",
     "close the list that starts at {start} with ']' and separate its items with ', '"),
    (r"flow mapping expected ',' or '\}'", "a {{ ... }} mapping is not closed, or misses a comma",
     "close the mapping that starts at {start} with '}}' and separate its entries with ', '"),
    (r"simple key could not find expected ':'", "a line that is not 'key: value'",
     "add the ':' after the key at {start}, or indent a continued value under its key"),
    (r"block scalar expected a comment or a line break", "text on the line of '|' or '>'",
     "start the block's text on the next line, indented"),
))


def _explained(exc: yaml.MarkedYAMLError) -> str:
    """PyYAML's message for ``exc``, reworded with a hint for the common mistakes."""
    text = " ".join(filter(None, [exc.context, exc.problem]))
    start = (f"line {exc.context_mark.line + 1}, column {exc.context_mark.column + 1}" if exc.context_mark
             else "the start")
    for pattern, what, fix in _MISTAKES:
        if found := pattern.search(text):
            return f"{what.format(*found.groups())}; {fix.format(*found.groups(), start=start)}"
    mark = exc.problem_mark
    if exc.context_mark and mark and exc.context_mark.line != mark.line:
        text += f" (it starts at {start})"
    return text or "invalid YAML"


def _check_expansion(root: yaml.Node) -> None:
    """Refuse a document that expands to more than MAX_VALUES values, each alias counted at every
    use, before expanding it: an alias bomb of a few lines is refused in a few milliseconds."""
    _size(root, {})


def _size(node: yaml.Node, sizes: dict[int, int]) -> int:
    """Values ``node`` expands to; ``sizes`` remembers the nodes already counted, by id."""
    if id(node) not in sizes:
        sizes[id(node)] = MAX_VALUES + 1  # until known; a node that contains itself is too large
        children = (node.value if isinstance(node, yaml.SequenceNode) else
                    [value for _, value in node.value] if isinstance(node, yaml.MappingNode) else [])
        total = 1 + sum(_size(child, sizes) for child in children)
        if total > MAX_VALUES:
            raise YamlError(f"file expands to more than {MAX_VALUES} values (aliases?)",
                            node.start_mark.line + 1, node.start_mark.column + 1, "E-yaml-too-large")
        sizes[id(node)] = total
    return sizes[id(node)]


def _convert(node: yaml.Node, path: Path_, locations: Locations) -> Any:
    if len(path) > MAX_DEPTH:
        raise YamlError(f"YAML nests deeper than {MAX_DEPTH} levels", node.start_mark.line + 1,
                        node.start_mark.column + 1, "E-yaml-too-deep")
    start = node.start_mark
    if isinstance(node, yaml.ScalarNode):
        locations[path] = Spot(start.line + 1, start.column + 1, node.value, node.style or None)  # libyaml: ''
        return _scalar(node)
    locations[path] = Spot(start.line + 1, start.column + 1)
    if isinstance(node, yaml.SequenceNode):
        return [_convert(item, path + (i,), locations) for i, item in enumerate(node.value)]
    result: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        if not isinstance(key_node, yaml.ScalarNode):
            raise YamlError("mapping keys must be plain scalars", key_node.start_mark.line + 1,
                            key_node.start_mark.column + 1)
        key = _scalar(key_node)
        key = key if isinstance(key, str) else str(key)
        if key in result:
            raise YamlError(f"duplicate key '{key}'", key_node.start_mark.line + 1,
                            key_node.start_mark.column + 1, "E-duplicate-key")
        locations[path + (key, KEY)] = Spot(key_node.start_mark.line + 1, key_node.start_mark.column + 1)
        result[key] = _convert(value_node, path + (key,), locations)
    return result


def position_in_scalar(spot: Spot, line: int, column: int, lines: list[str]) -> tuple[int, int]:
    """Map a 1-based position inside a scalar's text to its position in the file's ``lines``."""
    if spot.style in ("|", ">"):  # block scalars start on the next line, indented
        file_line = spot.line + line
        text = lines[file_line - 1] if file_line <= len(lines) else ""
        return file_line, len(text) - len(text.lstrip(" ")) + column
    offset = 1 if spot.style in ("'", '"') else 0
    if line == 1:
        return spot.line, spot.column + offset + column - 1
    return spot.line + line - 1, column
