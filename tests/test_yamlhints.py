"""YAML errors a person causes by indentation are worded by their likely cause, at the line to fix."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.loading.loader import read_tree
from engine.loading.yamlsource import YamlError, load_yaml

RULES = Path(__file__).resolve().parent.parent / "rules"
BUNDLED = sorted(RULES.rglob("*.yaml"))
#: PyYAML's own phrasing, which no reader should see.
RAW = re.compile(r"while (parsing|scanning)|expected <|<block|<document|<scalar>|but found|could not find|"
                 r"cannot start any token|not allowed here")

POLICY_HEAD = "id: p\ntitle: P\npayer: acme\nversion: '1'\neffective: 2024-01-01\n"


@pytest.mark.parametrize("text, line, column, message", [
    pytest.param("cases:\n  - name: a\n    expect: x\n - name: b\n    expect: y\n", 4, 2,
                 "this list item is indented 1 space less than the list items above it: move it to column 3, like line 2",
                 id="list item one space short"),
    pytest.param("expect:\n  - {pa_needed: no-auth}\n    - {pa_needed: auth-needed}\n", 3, 5,
                 "this list item is indented 2 spaces more than the list items above it: move it to column 3, like line 2",
                 id="list item two spaces deep"),
    pytest.param(POLICY_HEAD + " plans: [gold]\n", 6, 2,
                 "this key is indented 1 space more than the keys above it: move it to column 1, like line 5 "
                 "(indented deeper, YAML reads it as more of line 5's value)", id="key one space deep"),
    pytest.param("rules:\n  - when: true\n    pa_needed: no-auth\n   reason: x\n", 4, 4,
                 "this key is indented 1 space less than the keys above it: move it to column 5, like line 2",
                 id="key one space short"),
    pytest.param("a:\n  b: 1\n c: 2\n", 3, 2,
                 "this key lines up with none of the keys above it: move it to column 1, like line 1, "
                 "or to column 3, like line 2", id="key between two levels"),
    pytest.param("rules:\n  - id: a\n\t  when: true\n", 3, 1,
                 "this line is indented with a tab, and YAML allows only spaces: replace the tab with spaces",
                 id="tab"),
    pytest.param("# a comment\n  id: p\ntitle: P\n", 2, 3,
                 "the document's first line is indented 2 spaces, but the top-level entries after it (line 3) "
                 "start at column 1: start line 2 at column 1 too", id="first key indented"),
    pytest.param("id: p\nnotes: >-\nThe notice says so.\ntitle: P\n", 3, 1,
                 "the text under line 2's '>-' must be indented more than line 2: move it to column 3",
                 id="block text not indented"),
    pytest.param("notes: >-\n  The notice says\nso: and\n  more text: here\nid: x\n", 3, 1,
                 "this line is indented 2 spaces less than the text on the lines above and below it, so it ends "
                 "that text: move it to column 3, like line 2", id="block text line dedented"),
    pytest.param("codes:\n- 64490\n  - 64491\n  - {codes: [64492], effective: 2024-01-01}\n", 2, 1,
                 "this list item is indented 2 spaces less than the list items below it, so YAML reads them as "
                 "more of its text: move it to column 3, like line 3", id="first list item dedented"),
    pytest.param("reason: Note: see above\n", 1, 13,
                 "a value holds ': ', which YAML reads as the start of a key; quote the whole value",
                 id="colon in a value, well indented"),
])
def test_indentation_mistakes_name_the_cause_and_the_line_to_fix(tmp_path: Path, text: str, line: int, column: int,
                                                                 message: str) -> None:
    """Regression (issue 27, item 3): a list item one space short gave PyYAML's "while parsing a block
    mapping expected <block end>", a key one space deep a hint about quoting."""
    (tmp_path / "acme").mkdir()
    (tmp_path / "acme" / "p.yaml").write_text(text)
    problems = read_tree(tmp_path).problems
    assert [(p.line, p.column, p.code) for p in problems] == [(line, column, "E-yaml")]
    assert problems[0].message.startswith(message)
    assert str(problems[0]).startswith(f"{tmp_path / 'acme' / 'p.yaml'}:{line}:{column}: E-yaml: ")


def _shifted(text: str, index: int, shift: int | str) -> str:
    """``text`` with its line ``index`` indented ``shift`` spaces more (or less), or led by a tab."""
    lines = text.split("\n")
    body = lines[index].lstrip(" ")
    lead = len(lines[index]) - len(body)
    lines[index] = "\t" + lines[index] if shift == "tab" else " " * max(lead + int(shift), 0) + body
    return "\n".join(lines)


@settings(max_examples=300, deadline=None)
@given(path=st.sampled_from(BUNDLED), data=st.data())
def test_no_reindented_bundled_file_shows_parser_phrasing_or_an_unlocated_error(path: Path, data: st.DataObject) -> None:
    """Moving lines of a real rule file left or right, or indenting one with a tab, gives either a
    readable file or an error worded for people, located on a line of the file."""
    text = path.read_text()
    lines = text.split("\n")
    content = [index for index, line in enumerate(lines) if line.strip() and not line.lstrip().startswith("#")]
    moved = data.draw(st.lists(st.tuples(st.sampled_from(content), st.sampled_from([-3, -2, -1, 1, 2, 3, "tab"])),
                               min_size=1, max_size=3))
    for index, shift in moved:
        text = _shifted(text, index, shift)
    try:
        load_yaml(text)
    except YamlError as error:
        assert not RAW.search(error.message), error.message
        assert 1 <= error.line <= len(lines) and 1 <= error.column <= len(text.split("\n")[error.line - 1]) + 1


def test_one_line_moved_in_a_bundled_file_is_named_as_the_line_to_fix_in_most_cases() -> None:
    """Over every content line of a bundled file moved one space either way, the error names that
    very line for nine in ten (the others name a line whose fix is the same, such as the next line
    of a block of text)."""
    path = RULES / "medicare" / "opd" / "blepharoplasty.tests.yaml"
    text = path.read_text()
    named = failed = 0
    for index, line in enumerate(text.split("\n")):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        for shift in (-1, 1):
            try:
                load_yaml(_shifted(text, index, shift))
            except YamlError as error:
                failed += 1
                named += error.line == index + 1
    assert failed > 50 and named >= 0.9 * failed
