"""Word PyYAML's errors for the person who wrote the file: the likely cause first, at the line to fix.

Most YAML errors a person makes are indentation: a list item one space short, a key one space
deeper than its neighbours, a tab. PyYAML reports them in its parser's terms ("expected <block
end>, but found '<block sequence start>'"), often at a later line than the one to fix. Here the
lines around the error are compared with the blocks still open above them: a line that lines up
with none of them is the line to fix, and the message says which line it should line up with.
Other mistakes (an unquoted ``: ``, an unclosed quote or bracket) get a hint from a table; no
parser phrasing reaches the reader.
"""
from __future__ import annotations

import re
from typing import NamedTuple

import yaml

#: A line's leading "- " list markers, each with the spaces after it.
_ITEMS = re.compile(r"(?:-(?: +|$))*")
#: A line that starts with a plain or quoted key followed by ':'.
_KEY = re.compile(r"""(?:[^\s#'"\-?:,\[\]{}][^:#]*?|'[^']*'|"[^"]*")\s*:(?:\s|$)""")
#: A line ending with a block scalar's indicator ('|' or '>'): the lines under it are its text.
_BLOCK_TEXT = re.compile(r"(?:^\s*|:\s+|-\s+)([|>][-+0-9]*)\s*(?:#.*)?$")
#: The kinds of level a line of each kind may line up with: a list may sit at its key's column.
_FITS = {"list item": {"list item", "key"}, "key": {"key", "line"}, "line": {"list item", "key", "line"}}


class Hint(NamedTuple):
    """A reworded YAML error: what to tell the reader and where (1-based)."""

    message: str
    line: int
    column: int


class _Level(NamedTuple):
    """A column where an open block's entries start, and the line that shows it."""

    column: int  # 0-based
    kind: str  # "list item", "key" or "line"
    line: int  # 0-based


def explain(exc: yaml.MarkedYAMLError, text: str) -> Hint:
    """The reader's wording of ``exc``, raised while reading ``text``, and the line to fix."""
    lines = text.splitlines()
    problem, context = exc.problem_mark, exc.context_mark
    marks = [mark for mark in (problem, context) if mark is not None]
    if (exc.context or "").startswith("while scanning a simple key"):
        marks.reverse()  # the text that never found its ':' starts at the context mark: the line to fix
    for mark in marks:
        if hint := _indentation(lines, mark.line):
            above = _previous(lines, hint.line - 1)  # a line deeper than the one above may be right, that one not
            return (_lone_dedent(lines, above) if above is not None else None) or hint
    if problem and (hint := _scan_back(lines, problem.line)):
        return hint
    where = marks[0] if marks else None
    line, column = (where.line + 1, where.column + 1) if where else (1, 1)
    return Hint(_worded(exc), line, column)


def _indentation(lines: list[str], index: int) -> Hint | None:
    """The hint for line ``index`` (0-based) when a tab indents it, or when it lines up with no
    block open above it; None when its indentation is not the problem."""
    if not 0 <= index < len(lines) or not _content(lines[index]):
        return None
    text = lines[index]
    lead = len(text) - len(text.lstrip(" \t"))
    if "\t" in text[:lead]:
        return Hint("this line is indented with a tab, and YAML allows only spaces: replace the tab with "
                    "spaces", index + 1, text.index("\t") + 1)
    kind = _kind(text, lead)
    above = _previous(lines, index)
    if above is not None and _BLOCK_TEXT.search(lines[above]):
        return _unindented_text(lines, index)
    levels = _open_levels(lines, index)
    if not levels or any(level.column == lead and level.kind in _FITS[kind] for level in levels):
        return None
    if lead < min(level.column for level in levels):  # below every block: the document's first lines are
        first = min(levels, key=lambda level: level.line)
        return Hint(f"the document's first line is indented {_spaces(first.column)}, but the top-level entries "
                    f"after it (line {index + 1}) start at column {lead + 1}: start line {first.line + 1} at "
                    f"column {lead + 1} too", first.line + 1, first.column + 1)
    alike = [level for level in levels if level.kind == kind] or levels
    nearest = min(abs(level.column - lead) for level in alike)
    best = sorted({level.column: level for level in alike if abs(level.column - lead) == nearest}.values())
    what = f"this {kind}" if kind != "line" else "this line"
    first = best[0]
    more = "more" if lead > first.column else "less"
    if len(best) == 1:
        message = (f"{what} is indented {_spaces(abs(lead - first.column))} {more} than the {_plural(first.kind)} "
                   f"above it: move it to column {first.column + 1}, like line {first.line + 1}")
    else:
        message = f"{what} lines up with none of the {_plural(first.kind)} above it: move it to " + ", or to ".join(
            f"column {level.column + 1}, like line {level.line + 1}" for level in best)
    if len(best) == 1 and more == "more" and first.line == _previous(lines, index) and kind != "list item":
        message += f" (indented deeper, YAML reads it as more of line {first.line + 1}'s value)"
    return Hint(message, index + 1, lead + 1)


def _unindented_text(lines: list[str], index: int) -> Hint | None:
    """The hint for line ``index`` when the line above it starts block text ('|' or '>') and it is not
    indented under that line."""
    above = _previous(lines, index)
    opener = _BLOCK_TEXT.search(lines[above]) if above is not None else None
    if above is None or opener is None or _lead(lines[index]) > _lead(lines[above]):
        return None
    return Hint(f"the text under line {above + 1}'s '{opener.group(1)}' must be indented more than line "
                f"{above + 1}: move it to column {_lead(lines[above]) + 3}", index + 1, _lead(lines[index]) + 1)


def _lone_dedent(lines: list[str], index: int) -> Hint | None:
    """The hint for line ``index`` when it is indented less than the text on both sides of it."""
    text, lead = lines[index], _lead(lines[index])
    before, after = _previous(lines, index), _next(lines, index)
    if before is None or after is None or _BLOCK_TEXT.search(text) or _kind(text, lead) == "list item":
        return None
    if (_kind(lines[before], _lead(lines[before])) == "list item" or lines[before].rstrip().endswith(":")
            or _kind(lines[after], _lead(lines[after])) == "list item" or not _lead(lines[before]) == _lead(lines[after]) > lead):
        return None
    return Hint(f"this line is indented {_spaces(_lead(lines[before]) - lead)} less than the text on the lines above "
                f"and below it, so it ends that text: move it to column {_lead(lines[before]) + 1}, like line "
                f"{before + 1}", index + 1, lead + 1)


def _scan_back(lines: list[str], index: int) -> Hint | None:
    """The hint for a line at or above ``index``, within its top-level entry, that ends a block early:
    text not indented under its '|' or '>', a line of text indented less than the text on both sides
    of it, a list item indented less than the items below it (YAML reads those as more of its text)."""
    for back in range(min(index, len(lines) - 1), -1, -1):
        text = lines[back]
        if not _content(text):
            continue
        lead = _lead(text)
        if hint := _unindented_text(lines, back):
            return hint
        if hint := _lone_dedent(lines, back):
            return hint
        after = _next(lines, back)
        kind_after = _kind(lines[after], _lead(lines[after])) if after is not None else None
        end = _ITEMS.match(text, lead).end()  # type: ignore[union-attr]
        if (after is not None and kind_after == "list item" and _lead(lines[after]) > lead and end > lead
                and _kind(text, end) == "line" and not _BLOCK_TEXT.search(text)):
            return Hint(f"this list item is indented {_spaces(_lead(lines[after]) - lead)} less than the list items "
                        f"below it, so YAML reads them as more of its text: move it to column "
                        f"{_lead(lines[after]) + 1}, like line {after + 1}", back + 1, lead + 1)
        if lead == 0:
            return None
    return None


def _open_levels(lines: list[str], index: int) -> list[_Level]:
    """The columns where blocks still open at line ``index`` start their entries, nearest line first."""
    levels: list[_Level] = []
    limit = None
    for back in range(index - 1, -1, -1):
        text = lines[back]
        if not _content(text) or "\t" in text[:len(text) - len(text.lstrip(" \t"))]:
            continue
        lead = _lead(text)
        if limit is not None and lead >= limit:
            continue
        end = _ITEMS.match(text, lead).end()  # type: ignore[union-attr]  # the pattern matches the empty text
        columns = [lead + found.start() for found in re.finditer(r"-", text[lead:end])]
        levels += [_Level(column, "list item", back) for column in columns]
        if end < len(text):
            levels.append(_Level(end, _kind(text, end), back))
        limit = lead
        if lead == 0:
            break
    return levels


def _kind(text: str, at: int) -> str:
    """What starts at column ``at`` of ``text``: a list item, a key, or other text."""
    if text.startswith("-", at) and (len(text) == at + 1 or text[at + 1] == " "):
        return "list item"
    return "key" if _KEY.match(text, at) else "line"


def _plural(kind: str) -> str:
    return {"list item": "list items", "key": "keys"}.get(kind, "line")


def _spaces(count: int) -> str:
    return f"{count} space" + ("" if count == 1 else "s")


def _content(text: str) -> bool:
    """Whether a line holds YAML (not blank, not only a comment)."""
    stripped = text.strip(" \t")
    return bool(stripped) and not stripped.startswith("#")


def _lead(text: str) -> int:
    return len(text) - len(text.lstrip(" "))


def _next(lines: list[str], index: int) -> int | None:
    """The nearest line below ``index`` that holds YAML."""
    return next((ahead for ahead in range(index + 1, len(lines)) if _content(lines[ahead])), None)


def _previous(lines: list[str], index: int) -> int | None:
    """The nearest line above ``index`` that holds YAML."""
    return next((back for back in range(index - 1, -1, -1) if _content(lines[back])), None)


#: The common mistakes that are not indentation: (pattern of PyYAML's "context problem" text, what
#: happened, how to fix it). ``{start}`` is where the construct that failed starts, ``{0}`` the first group.
_MISTAKES: tuple[tuple[re.Pattern[str], str, str], ...] = tuple((re.compile(pattern), what, fix) for pattern, what, fix in (
    (r"mapping values are not allowed here", "a value holds ': ', which YAML reads as the start of a key",
     'quote the whole value (reason: "Note: ...")'),
    (r"expected <block end>, but found '-'", "a list item where a key was expected",
     "indent the '-' items under their key"),
    (r"expected <block end>, but found '<scalar>'", "more text after a value",
     "quote the whole value (in single quotes, write an apostrophe twice: 'it''s')"),
    (r"expected <block end>, but found", "an entry that does not belong to the block above it (started at {start})",
     "give the entries of one mapping or list the same indentation, and write each key as 'key: value'"),
    (r"found character '\\t' that cannot start any token", "a tab character", "write spaces instead, YAML does not allow tabs"),
    (r"found character '(.)' that cannot start any token", "a value cannot start with '{0}'", "quote the value"),
    (r"(alias expected alphabetic or numeric character|found undefined alias)", "'*' starts an alias in YAML",
     "quote a value that starts with '*' or '&' (\"*\")"),
    (r"quoted scalar found unexpected end of stream", "a quoted value is never closed",
     "add the closing quote to the value that starts at {start}"),
    (r"flow sequence expected ',' or '\]'", "a [ ... ] list is not closed, or misses a comma",
     "close the list that starts at {start} with ']' and separate its items with ', '"),
    (r"flow mapping expected ',' or '\}'", "a {{ ... }} mapping is not closed, or misses a comma",
     "close the mapping that starts at {start} with '}}' and separate its entries with ', '"),
    (r"simple key could not find expected ':'", "this line is neither 'key: value' nor indented under a key",
     "add the ':' after its key, or indent it like the text it continues"),
    (r"block scalar expected a comment or a line break", "text on the line of '|' or '>'",
     "start the block's text on the next line, indented"),
    (r"sequence entries are not allowed here", "a list item ('- ') after a value on the same line",
     "start the list on the line after its key, indented"),
    (r"expected '<document start>'", "text after the document's top-level entries",
     "start every top-level key at column 1, and write each as 'key: value'"),
))

#: Parser phrasing no reader should see: a problem holding any of these is replaced by a general hint.
_PARSER_WORDS = re.compile(r"<[a-z ]+>|while (parsing|scanning)|expected|token")


def _worded(exc: yaml.MarkedYAMLError) -> str:
    """``exc`` reworded from the table of common mistakes, else in general terms."""
    text = " ".join(filter(None, [exc.context, exc.problem]))
    start = (f"line {exc.context_mark.line + 1}, column {exc.context_mark.column + 1}" if exc.context_mark
             else "the start")
    for pattern, what, fix in _MISTAKES:
        if found := pattern.search(text):
            return f"{what.format(*found.groups(), start=start)}; {fix.format(*found.groups(), start=start)}"
    problem = exc.problem or ""
    if problem and not _PARSER_WORDS.search(problem):
        return f"YAML cannot read this: {problem}"
    return ("YAML cannot read this line: indent it like the entries it belongs with, and quote a value "
            "that holds ': ' or ' #' or starts with a character such as '@', '`', '*' or '&'")
