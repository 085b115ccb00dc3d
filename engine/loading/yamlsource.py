"""Read YAML safely into plain data while remembering where every value came from.

PyYAML's composer gives nodes with marks; this module turns them into dicts, lists and scalars
and a :class:`Locations` map from each value's path to its position and raw spelling, so that
every later error can point at file:line:column. Only the safe constructors are used.
"""
from __future__ import annotations

import datetime as dt
import re
from typing import Any, NamedTuple

import yaml

from engine.loading.yamlhints import explain

#: Largest YAML file accepted, in bytes.
MAX_FILE_BYTES = 1_000_000
#: Most values one file may expand to (guards against alias bombs).
MAX_VALUES = 200_000
#: Deepest nesting of mappings and lists accepted (a policy file needs about six levels).
MAX_DEPTH = 64

Path_ = tuple[object, ...]
#: Path element naming a mapping key itself: ``path + (key, KEY)`` is where ``key`` is written.
KEY = object()


class Spot(NamedTuple):
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


class Locations:
    """Where each value of one document is written, found on demand in its composed nodes: a path
    such as ``("rules", 0, "when")`` gives its :class:`Spot`. Most paths are never asked for (only
    problems, rule starts and numbers' spellings are), so none is worked out before it is.

    A document read in another process comes with the spots :meth:`common` worked out there, and
    its text, composed again here only when a path not among them is asked for."""

    __slots__ = ("_root", "_pairs", "_known", "_text")

    def __init__(self, root: yaml.Node | None = None, known: dict[Path_, tuple[Any, ...]] | None = None,
                 text: str | None = None) -> None:
        self._root, self._known, self._text = root, known or {}, text
        #: per mapping node (by id), its entries by key as the data spells the key
        self._pairs: dict[int, dict[str, tuple[yaml.Node, yaml.Node]]] = {}

    def get(self, path: Path_) -> Spot | None:
        """The spot of exactly ``path``, or None when nothing is written there."""
        path = tuple(path)
        if path in self._known:
            return Spot._make(self._known[path])
        spot, found = self._walk(path)
        return spot if found else None

    def find(self, path: Path_) -> Spot:
        """The spot of ``path`` or of its nearest located ancestor."""
        path = tuple(path)
        if path in self._known:
            return Spot._make(self._known[path])
        return self._walk(path)[0] or Spot(1, 1)

    def common(self) -> dict[Path_, tuple[Any, ...]]:
        """The spots a policy file asks for whenever it is read, as plain tuples (they pickle
        cheaply, nodes do not): every mapping and list, every top-level value, every scalar that is
        not text (a number keeps its spelling)."""
        found: dict[Path_, tuple[Any, ...]] = {}
        if self._root is not None:
            self._gather(self._root, (), found)
        return found

    def _gather(self, node: yaml.Node, path: Path_, found: dict[Path_, tuple[Any, ...]]) -> None:
        if node.__class__ is yaml.ScalarNode:
            if len(path) <= 1 or node.tag != _STR:
                found[path] = tuple(_spot(node))
            return
        found[path] = tuple(_spot(node))
        if node.__class__ is yaml.SequenceNode:
            for index, item in enumerate(node.value):
                self._gather(item, (*path, index), found)
        else:
            for key, value in node.value:
                self._gather(value, (*path, _key(key)), found)

    def _walk(self, path: Path_) -> tuple[Spot | None, bool]:
        """The spot of the longest located start of ``path``, and whether that is all of it."""
        if self._text is not None:  # read in another process: compose here, once
            self._root, self._text = _compose(self._text), None
        node = self._root
        if node is None:
            return None, not path
        for depth, key in enumerate(path):
            if isinstance(node, yaml.SequenceNode) and isinstance(key, int) and 0 <= key < len(node.value):
                node = node.value[key]
            elif isinstance(node, yaml.MappingNode) and key is not KEY and (pair := self._entries(node).get(key)):
                if depth + 1 < len(path) and path[depth + 1] is KEY:
                    start = pair[0].start_mark
                    return Spot(start.line + 1, start.column + 1), depth + 2 == len(path)
                node = pair[1]
            else:
                return _spot(node), False
        return _spot(node), True

    def _entries(self, node: yaml.MappingNode) -> dict[str, tuple[yaml.Node, yaml.Node]]:
        if id(node) not in self._pairs:
            self._pairs[id(node)] = {_key(key): (key, value) for key, value in node.value}
        return self._pairs[id(node)]


def _spot(node: yaml.Node) -> Spot:
    start = node.start_mark
    if isinstance(node, yaml.ScalarNode):
        return Spot(start.line + 1, start.column + 1, node.value, node.style or None)  # libyaml: ''
    return Spot(start.line + 1, start.column + 1)


_CONSTRUCTOR = yaml.constructor.SafeConstructor()
_STR = "tag:yaml.org,2002:str"
_SEQ = "tag:yaml.org,2002:seq"
_MAP = "tag:yaml.org,2002:map"
#: libyaml's parser when PyYAML was built with it (about ten times faster), else the Python one.
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
#: The safe loader's implicit tags of plain scalars, by first character ('' for the empty scalar).
_IMPLICIT = _SAFE_LOADER.yaml_implicit_resolvers
_TAGS = {first: tuple(found) + tuple(_IMPLICIT.get(None, ())) for first, found in _IMPLICIT.items() if first is not None}
_ANY_FIRST = tuple(_IMPLICIT.get(None, ()))


class _Composer(_SAFE_LOADER):  # type: ignore[misc, valid-type]
    """The safe loader, tagging nodes as it does but without the path resolvers PyYAML supports
    and covreq never registers: their bookkeeping, called for every node, was a fifth of composing."""

    def descend_resolver(self, current_node: yaml.Node | None, current_index: object) -> None:
        """No path resolvers: nothing to track."""

    def ascend_resolver(self) -> None:
        """No path resolvers: nothing to track."""

    def resolve(self, kind: type, value: str | None, implicit: tuple[bool, bool]) -> str:
        """The tag of a node without an explicit one, as the safe loader's resolver gives it."""
        if kind is yaml.ScalarNode:
            if implicit[0]:
                for tag, pattern in _TAGS.get(value[:1], _ANY_FIRST):  # type: ignore[index]
                    if pattern.match(value):
                        return tag  # type: ignore[no-any-return]
            return _STR
        return _SEQ if kind is yaml.SequenceNode else _MAP


def _compose(text: str) -> yaml.Node | None:
    """Compose with the fast parser; on any error compose again with the Python parser, so that
    problems are worded and located exactly as before."""
    try:
        return yaml.compose(text, Loader=_Composer)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        if getattr(exc, "problem", None) == "exceeded maximum nesting depth" and mark:
            # libyaml's own limit; Python's parser would recurse for seconds to the same end
            raise YamlError("YAML nests too deeply", mark.line + 1, mark.column + 1, "E-yaml-too-deep") from None
        loader = yaml.SafeLoader(text)
        try:
            return loader.get_single_node()
        except ValueError:  # chr() of an escape past U+10FFFF; the reader stands after its "\U"
            raise _bad_escape(text, max(loader.get_mark().index - 2, 0), len(text)) from None
        finally:
            loader.dispose()


#: Where a text may hold a code point that is no character: an escape, or such a code point itself.
_SUSPECT = re.compile(r"\\[uU]|[\ud800-\udfff]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")
#: The escapes of a double-quoted scalar, ``\\`` too: an escaped backslash starts no escape.
_ESCAPE = re.compile(r"\\(?:u([0-9a-fA-F]{4})|U([0-9a-fA-F]{8})|.)", re.S)
#: Line breaks as PyYAML's reader counts them.
_BREAK = re.compile(r"\r\n|[\n\r\x85\u2028\u2029]")


def _check_characters(text: str, root: yaml.Node) -> None:
    """Refuse a key or value holding a code point that is no character, a lone UTF-16 surrogate
    (only an escape such as ``"\\ud800"`` writes one): it cannot be encoded as UTF-8, so every
    answer, list or form quoting it would fail. Nodes are walked only when the text has an escape."""
    if not _SUSPECT.search(text):
        return
    seen: set[int] = set()
    nodes = [root]
    while nodes:  # in document order, each node once (an alias shares its anchor's node)
        node = nodes.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if node.__class__ is yaml.ScalarNode:
            if _SURROGATE.search(node.value):
                start = node.start_mark
                raise _bad_escape(text, start.index, node.end_mark.index, (start.line + 1, start.column + 1))
        else:
            nodes.extend(reversed(node.value if node.__class__ is yaml.SequenceNode
                                  else [part for pair in node.value for part in pair]))


def _bad_escape(text: str, start: int, end: int, fallback: tuple[int, int] = (1, 1)) -> YamlError:
    """The located error for the first escape of ``text[start:end]`` that is no character."""
    for found in _ESCAPE.finditer(text, start, end):
        digits = found.group(1) or found.group(2)
        code = int(digits, 16) if digits else 0
        if 0xD800 <= code <= 0xDFFF or code > 0x10FFFF:
            break
    else:
        return YamlError("a text holds a lone UTF-16 surrogate, which is not a character", *fallback, "E-yaml-escape")
    if code > 0x10FFFF:
        why = "is past the last Unicode character, U+10FFFF"
    else:
        why = "is half of a UTF-16 surrogate pair, not a character; write the character itself"
        low = re.match(r"\\u([dD][c-fC-F][0-9a-fA-F]{2})", text[found.end():found.end() + 6])
        if code < 0xDC00 and low:  # a pair as JSON writes it: YAML wants the character's own escape
            why += f" or its escape \\U{0x10000 + (code - 0xD800) * 0x400 + int(low.group(1), 16) - 0xDC00:08X}"
    before = text[:found.start()]
    breaks = list(_BREAK.finditer(before))
    column = found.start() - (breaks[-1].end() if breaks else 0) + 1
    return YamlError(f'"{found.group()}" {why}', len(breaks) + 1, column, "E-yaml-escape")


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
        raise YamlError(*explain(exc, text)) from None
    except yaml.YAMLError as exc:
        raise YamlError(str(exc)) from None
    except RecursionError:
        raise YamlError("YAML nests too deeply", code="E-yaml-too-deep") from None
    if node is None:
        return None, Locations()
    try:
        data = _Plain(node).data()
    except RecursionError:
        raise YamlError("YAML nests too deeply", code="E-yaml-too-deep") from None
    _check_characters(text, node)
    return data, Locations(node)


def _check_expansion(root: yaml.Node) -> None:
    """Refuse a document that expands to more than MAX_VALUES values, each alias counted at every
    use, located at the first value whose expansion passes the limit; counted without expanding
    anything, so an alias bomb's size costs milliseconds to find. Only a document that
    :class:`_Plain` found too large, or wrong in another way, is counted."""
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


def _key(node: yaml.ScalarNode) -> str:
    """A mapping key as the data spells it (a key such as ``1`` or ``true`` becomes text)."""
    key = _scalar(node)
    return key if isinstance(key, str) else str(key)


class _Plain:
    """Turns one composed document into dicts, lists and scalars, and refuses what it may not hold:
    a value nested deeper than :data:`MAX_DEPTH`, a key that is not a scalar, a key written twice,
    more than :data:`MAX_VALUES` values (each alias counted at every use)."""

    __slots__ = ("root", "count")

    def __init__(self, root: yaml.Node) -> None:
        self.root = root
        self.count = 1

    def data(self) -> Any:
        """The document's data; raise :class:`YamlError` at the first problem met."""
        try:
            return self._value(self.root, 0)
        except YamlError:
            _check_expansion(self.root)  # a document too large is reported as such, whatever else is wrong
            raise

    def _value(self, node: yaml.Node, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise YamlError(f"YAML nests deeper than {MAX_DEPTH} levels", node.start_mark.line + 1,
                            node.start_mark.column + 1, "E-yaml-too-deep")
        if node.__class__ is yaml.ScalarNode:
            return _scalar(node)
        items = node.value
        self.count += len(items)
        if self.count > MAX_VALUES:  # stop expanding: the check says where the document grows too large
            _check_expansion(self.root)
        deeper, inline = depth + 1, depth < MAX_DEPTH  # a text scalar is its own value (most values)
        if node.__class__ is yaml.SequenceNode:
            return [item.value if inline and item.__class__ is yaml.ScalarNode and item.tag == _STR
                    else self._value(item, deeper) for item in items]
        result: dict[str, Any] = {}
        for key_node, value_node in items:
            if key_node.__class__ is not yaml.ScalarNode:
                raise YamlError("mapping keys must be plain scalars", key_node.start_mark.line + 1,
                                key_node.start_mark.column + 1)
            key = key_node.value if key_node.tag == _STR else _key(key_node)
            if key in result:
                raise YamlError(f"duplicate key '{key}'", key_node.start_mark.line + 1,
                                key_node.start_mark.column + 1, "E-duplicate-key")
            result[key] = (value_node.value if inline and value_node.__class__ is yaml.ScalarNode
                           and value_node.tag == _STR else self._value(value_node, deeper))
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
