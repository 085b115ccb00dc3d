"""The condition grammar: what parses, where syntax errors point, and that nothing else escapes."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.language import ast
from engine.errors import ConditionError
from engine.language.parser import MAX_CONDITION_LENGTH, MAX_NESTING, parse_condition
from engine.language.render import render


def test_precedence_not_binds_tighter_than_and_than_or() -> None:
    tree = parse_condition("not known(plan) and units > 1 or code in {15823}")
    assert isinstance(tree, ast.Or)
    left = tree.operands[0]
    assert isinstance(left, ast.And) and isinstance(left.operands[0], ast.Not)


def test_chains_of_and_are_flattened() -> None:
    tree = parse_condition("units > 1 and units > 2 and units > 3")
    assert isinstance(tree, ast.And) and len(tree.operands) == 3


def test_nodes_carry_line_and_column() -> None:
    tree = parse_condition("units > 1 and\n  place_of_service == \"22\"")
    second = tree.operands[1]
    assert (second.pos.line, second.pos.column) == (2, 3)


def test_set_items_keep_raw_text_for_later_typing() -> None:
    tree = parse_condition("diagnoses overlaps {H02.83*, G43.701, \"22\", 15820-15823, 2020-01-01}")
    assert [i.text for i in tree.set.items] == ["H02.83*", "G43.701", "22", "15820-15823", "2020-01-01"]
    assert [i.quoted for i in tree.set.items] == [False, False, True, False, False]


@pytest.mark.parametrize("text, value", [("place_of_service == '12'", "12"), ('x == "a\\"b"', 'a"b'),
                                         ("x == 'it\\'s'", "it's")])
def test_strings_take_double_or_single_quotes_with_escapes(text: str, value: str) -> None:
    literal = parse_condition(text).right
    assert literal.text == value
    assert parse_condition(render(parse_condition(text))).right.text == value


def test_date_shift_parses_units() -> None:
    tree = parse_condition("date_of_service - 30 days >= patient.birth_date")
    shift = tree.left
    assert isinstance(shift, ast.Shift) and (shift.sign, shift.amount, shift.unit) == (-1, 30, "day")


@pytest.mark.parametrize("text, line, column", [
    ("units > 1 and", 1, 14),
    ("place_of_service in {\"11\" \"22\"}", 1, 27),
    ("units $ 1", 1, 7),
    ("(units > 1", 1, 11),
    ("units > 1 and\n  and units < 3", 2, 3),
])
def test_syntax_errors_point_at_the_offending_place(text: str, line: int, column: int) -> None:
    with pytest.raises(ConditionError) as info:
        parse_condition(text)
    assert (info.value.code, info.value.line, info.value.column) == ("E-syntax", line, column)


def test_overlong_condition_is_refused() -> None:
    with pytest.raises(ConditionError) as info:
        parse_condition("true or " * (MAX_CONDITION_LENGTH // 8 + 1) + "true")
    assert info.value.code == "E-condition-too-long"


def test_deep_nesting_is_refused_with_a_position() -> None:
    text = "(" * (MAX_NESTING + 1) + "true" + ")" * (MAX_NESTING + 1)
    with pytest.raises(ConditionError) as info:
        parse_condition(text)
    assert info.value.code == "E-condition-too-deep" and info.value.column == MAX_NESTING + 1


@pytest.mark.parametrize("text", [
    "place_of_service not in {\"19\", \"22\"}",
    "not (units > 1 or known(plan)) and diagnoses overlaps {H02.83*}",
    "date_of_service + 1 year > 2020-01-01",
    "modifiers contains \"50\"",
])
def test_render_round_trips(text: str) -> None:
    assert render(parse_condition(render(parse_condition(text)))) == render(parse_condition(text))


_ALPHABET = st.sampled_from(list("abcdefxyz_.019\"{}(),*-+<>=! \n") + [
    " and ", " or ", "not ", " in ", " overlaps ", " contains ", "known(", "true", "false", "units",
    "2020-01-01", "30 days", "H02.83*", "15820-15823"])


@settings(max_examples=400, deadline=None)
@given(st.lists(_ALPHABET, max_size=30).map("".join))
def test_random_text_raises_only_condition_errors(text: str) -> None:
    try:
        parse_condition(text)
    except ConditionError as exc:
        assert exc.line >= 1 and exc.column >= 1


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=60))
def test_arbitrary_unicode_raises_only_condition_errors(text: str) -> None:
    try:
        parse_condition(text)
    except ConditionError:
        pass
