"""``covreq fmt``: normalise policy files without losing their comments.

Normal form: top-level keys in the schema's order, rule keys as ``id, when, pa_needed, covered,
reason, documentation``, and every list of ``codes`` sorted by first code, each item once. Codes are
never merged into ranges nor ranges split: authors search policy files for a code, so a code listed
on its own stays findable. Codes made only of digits are double-quoted so YAML never reads them as
numbers.

ruamel.yaml's round-trip mode reads and writes the file; it keeps comments, quoting, flow or block
style and folded text, so a file already in normal form is written back byte for byte. A comment
attached to a code inside a list that would be re-ordered cannot follow its code reliably, so such a
list is left as it is (and reported), rather than moving or dropping the comment.

Exit codes: 0 nothing to change (or files rewritten); 1 with ``--check``, some file is not in
normal form; 2 a file cannot be read or parsed.
"""
from __future__ import annotations

import difflib
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, TextIO

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError
from ruamel.yaml.scalarstring import DoubleQuotedScalarString

from engine.language.codes import CPT, HCPCS, CodeError, covered_items, item_order, parse_code_item
from engine.loading.files import PAYER_FILE, iter_rule_files, leaves_tree
from engine.resources import schema_path
from engine.loading.yamlsource import YamlError, load_yaml

EXIT_OK, EXIT_CHANGES, EXIT_ERROR = 0, 1, 2
RULE_ORDER = ("id", "when", "pa_needed", "covered", "reason", "documentation")
#: A line ending in a comment: what precedes it, the blanks before ``#``, the comment.
_INLINE_COMMENT = re.compile(r"^(.*?\S)([ \t]+)(#.*)$")


def _top_order() -> tuple[str, ...]:
    """The schema's property order: the documented order of a policy file's keys."""
    return tuple(json.loads(schema_path().read_text(encoding="utf-8"))["properties"])


@dataclass(frozen=True)
class Formatted:
    """One file's result: its new text, and notes on what could not be normalised."""

    path: str
    before: str
    after: str
    notes: tuple[str, ...] = ()

    @property
    def changed(self) -> bool:
        """True when the normal form differs from the file."""
        return self.before != self.after

    def diff(self) -> str:
        """The change from the file to its normal form, as a unified diff."""
        return "".join(difflib.unified_diff(self.before.splitlines(keepends=True), self.after.splitlines(keepends=True),
                                            self.path, f"{self.path} (formatted)"))


def _yaml() -> YAML:
    yaml = YAML()  # round-trip: comments, quotes and styles are kept
    yaml.preserve_quotes = True
    yaml.width = 4096  # never re-wrap long lines
    yaml.indent(mapping=2, sequence=4, offset=2)
    return yaml


def _reorder(mapping: CommentedMap, order: tuple[str, ...]) -> None:
    """Put known keys in ``order``, others after them in their current order; comments travel."""
    rank = {key: i for i, key in enumerate(order)}
    keys = sorted(mapping, key=lambda k: (rank.get(k, len(order)), list(mapping).index(k)))
    for key in keys:
        mapping.move_to_end(key)


def _is_code_item(item: str) -> bool:
    """True when ``item`` is a CPT/HCPCS code or range the loader accepts."""
    try:
        parse_code_item(item, (CPT, HCPCS))
    except CodeError:
        return False
    return True


def _scalar(code: str) -> str:
    return DoubleQuotedScalarString(code) if code.isdigit() else code


def _codes(seq: CommentedSeq, where: str, notes: list[str]) -> None:
    """Sort the plain codes and ranges of ``seq`` in place, each written once; code groups keep their
    place after them."""
    groups = [item for item in seq if isinstance(item, dict)]
    for group in groups:
        if isinstance(group.get("codes"), CommentedSeq):
            _codes(group["codes"], where, notes)
    plain = [item for item in seq if not isinstance(item, dict)]
    if any(isinstance(item, int) and len(str(item)) != 5 for item in plain):
        return  # a bare number YAML has re-read (e.g. 01234): only its spelling in the file is right
    if not all(_is_code_item(str(item)) for item in plain):
        return  # an item the loader will reject: leave the list to validate
    covered = covered_items([str(item) for item in plain])
    kept = [str(item) for index, item in enumerate(plain) if index not in covered]
    ordered = [_scalar(c) for c in sorted(kept, key=item_order)]
    if [*map(str, ordered), *groups] == [item if isinstance(item, dict) else str(item) for item in seq]:
        return
    last = len(seq) - 1
    if any(index != last for index in seq.ca.items):
        notes.append(f"{where}: codes kept in their order because a comment is attached to one of them")
        return
    tail = seq.ca.items.pop(last, None)
    seq[:] = [*ordered, *groups]
    if tail is not None:
        seq.ca.items[len(seq) - 1] = tail


def _keep_comment_gaps(before: str, after: str) -> str:
    """``after`` with the blanks before each rewritten line's end-of-line comment as ``before`` had
    them (ruamel.yaml keeps a comment's column, so a line that shrinks or grows moves it)."""
    gaps: dict[str, str | None] = {}
    for line in before.splitlines():
        match = _INLINE_COMMENT.match(line)
        if match:  # a comment written twice with different gaps is left as ruamel puts it
            gaps[match[3]] = match[2] if gaps.get(match[3], match[2]) == match[2] else None
    unchanged = set(before.splitlines())
    lines = after.splitlines(keepends=True)
    for index, line in enumerate(lines):
        match = _INLINE_COMMENT.match(line.rstrip("\n"))
        if match and line.rstrip("\n") not in unchanged and gaps.get(match[3]):
            lines[index] = f"{match[1]}{gaps[match[3]]}{match[3]}" + ("\n" if line.endswith("\n") else "")
    return "".join(lines)


def format_text(text: str, path: str = "<policy>") -> Formatted:
    """The normal form of one policy file's text; raise YAMLError when it does not parse."""
    round_trip = _yaml()  # ruamel's round-trip loader builds only plain data (its constructor is the safe one)
    data = round_trip.load(text)
    notes: list[str] = []
    if isinstance(data, CommentedMap):
        _reorder(data, _top_order())
        for rule in data.get("rules") or []:
            if isinstance(rule, CommentedMap):
                _reorder(rule, RULE_ORDER)
        if isinstance(data.get("codes"), CommentedSeq):
            _codes(data["codes"], path, notes)
    out = io.StringIO()
    round_trip.dump(data, out)
    return Formatted(path, text, _keep_comment_gaps(text, out.getvalue()), tuple(notes))


def _policy_files(paths: Iterable[str]) -> list[Path]:
    """Policy files under ``paths``; never a link that leads out of its tree (it is not ours to rewrite)."""
    return [p for root in map(Path, paths) for p in iter_rule_files(root)
            if p.name != PAYER_FILE and not (root.is_dir() and leaves_tree(p, root.resolve()))]


def _yaml_problem(text: str, exc: YAMLError) -> str:
    """``line:column: code: message`` of a file ruamel.yaml cannot read, worded as ``validate`` words it."""
    try:
        load_yaml(text)
    except YamlError as problem:
        return f"{problem.line}:{problem.column}: {problem.code}: {problem.message}"
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    where = f"{mark.line + 1}:{mark.column + 1}" if mark else "1:1"
    return f"{where}: E-yaml: {' '.join(str(getattr(exc, 'problem', None) or exc).split())}"


def run(paths: Iterable[str], check: bool, out: TextIO, err: TextIO, diff: bool = False) -> int:
    """The ``covreq fmt`` command: rewrite policy files in normal form, or with ``check`` only list them
    (with ``diff``, each with the unified diff of what would change)."""
    status = EXIT_OK
    for path in _policy_files(paths):
        try:
            text = path.read_text(encoding="utf-8")
            result = format_text(text, str(path))
        except (OSError, UnicodeDecodeError) as exc:
            print(f"{path}:1:1: E-io: cannot format: {exc}", file=err)
            status = EXIT_ERROR
            continue
        except YAMLError as exc:
            print(f"{path}:{_yaml_problem(text, exc)} (cannot format)", file=err)
            status = EXIT_ERROR
            continue
        for note in result.notes:
            print(note, file=err)
        if not result.changed:
            continue
        if check:
            print(f"{path}: not formatted (run covreq fmt {path})", file=out)
            if diff:
                out.write(result.diff())
            status = max(status, EXIT_CHANGES)
        else:
            path.write_text(result.after, encoding="utf-8")
            print(f"formatted {path}", file=out)
    return status
