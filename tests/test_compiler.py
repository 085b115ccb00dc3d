"""Compiled closures: Kleene three-valued logic, membership, dates (with hypothesis for the laws)."""
from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.language.checker import Checker
from engine.language.compiler import Compiler, shift_date
from engine.language.parser import parse_condition


def compile_(text: str, value_sets: dict[str, list[str]] | None = None):  # type: ignore[no-untyped-def]
    expr = parse_condition(text)
    return Compiler(Checker(value_sets).check(expr)).test(expr)


# Three atoms whose truth we control through the request: true, false, or unknown (absent).
ATOMS = {"a": "units > 1", "b": "patient.age > 1", "c": "place_of_service == \"22\""}
FACTS = {"a": ("units", 2.0, 0.0), "b": ("patient.age", 2, 0), "c": ("place_of_service", "22", "11")}
truth = st.sampled_from([True, False, None])


def ctx_for(values: dict[str, bool | None]) -> dict[str, Any]:
    ctx: dict[str, Any] = {}
    for atom, value in values.items():
        name, yes, no = FACTS[atom]
        if value is not None:
            ctx[name] = yes if value else no
    return ctx


def kleene_and(x: bool | None, y: bool | None) -> bool | None:
    if x is False or y is False:
        return False
    return None if x is None or y is None else True


def kleene_or(x: bool | None, y: bool | None) -> bool | None:
    if x is True or y is True:
        return True
    return None if x is None or y is None else False


def kleene_not(x: bool | None) -> bool | None:
    return None if x is None else not x


@settings(max_examples=200, deadline=None)
@given(truth, truth, truth)
def test_and_or_not_follow_kleene_truth_tables(a: bool | None, b: bool | None, c: bool | None) -> None:
    ctx = ctx_for({"a": a, "b": b, "c": c})
    A, B, C = ATOMS["a"], ATOMS["b"], ATOMS["c"]
    assert compile_(f"{A} and {B}")(ctx) is kleene_and(a, b)
    assert compile_(f"{A} or {B}")(ctx) is kleene_or(a, b)
    assert compile_(f"not {A}")(ctx) is kleene_not(a)
    assert compile_(f"{A} and ({B} or {C})")(ctx) is kleene_and(a, kleene_or(b, c))


@settings(max_examples=200, deadline=None)
@given(truth, truth)
def test_de_morgan_and_double_negation_hold_with_unknowns(a: bool | None, b: bool | None) -> None:
    ctx = ctx_for({"a": a, "b": b, "c": None})
    A, B = ATOMS["a"], ATOMS["b"]
    assert compile_(f"not ({A} and {B})")(ctx) is compile_(f"not {A} or not {B}")(ctx)
    assert compile_(f"not ({A} or {B})")(ctx) is compile_(f"not {A} and not {B}")(ctx)
    assert compile_(f"not not {A}")(ctx) is compile_(A)(ctx)


@settings(max_examples=200, deadline=None)
@given(truth, truth, truth)
def test_knowing_more_never_flips_a_known_answer(a: bool | None, b: bool | None, c: bool | None) -> None:
    """Monotonicity: replacing unknowns by values keeps every definite result."""
    text = f"({ATOMS['a']} or {ATOMS['b']}) and not {ATOMS['c']}"
    partial = compile_(text)(ctx_for({"a": a, "b": b, "c": c}))
    full = compile_(text)(ctx_for({"a": a if a is not None else True, "b": b, "c": c if c is not None else False}))
    if partial is not None:
        assert full is partial


def test_known_is_never_unknown() -> None:
    test = compile_("known(place_of_service)")
    assert test({}) is False and test({"place_of_service": "11"}) is True


def test_membership_in_ranges_wildcards_and_value_sets() -> None:
    assert compile_("code in {15820-15823}")({"code": "15822"}) is True
    assert compile_("code in {15820-15823}")({"code": "15824"}) is False
    assert compile_("diagnoses overlaps {H02.83*}")({"diagnoses": frozenset({"H02831"})}) is True
    assert compile_("diagnoses overlaps {H02.83*}")({"diagnoses": frozenset({"H02841"})}) is False
    assert compile_("type_of_bill in {\"13*\"}")({"type_of_bill": "13X"}) is True
    inj = compile_("other_codes overlaps injections", {"injections": ["64612", "64615"]})
    assert inj({"other_codes": frozenset({"64615"})}) is True and inj({"other_codes": frozenset()}) is False


def test_absent_fact_makes_comparison_unknown() -> None:
    assert compile_("place_of_service not in {\"19\", \"22\"}")({}) is None
    assert compile_("diagnoses overlaps {H02.83*}")({}) is None


@pytest.mark.parametrize("day, sign, amount, unit, expected", [
    (dt.date(2021, 1, 1), 1, 119, "day", dt.date(2021, 4, 30)),
    (dt.date(2020, 1, 31), 1, 1, "month", dt.date(2020, 2, 29)),
    (dt.date(2020, 2, 29), 1, 1, "year", dt.date(2021, 2, 28)),
    (dt.date(2020, 3, 15), -1, 2, "week", dt.date(2020, 3, 1)),
])
def test_date_shifts_clamp_to_month_end(day: dt.date, sign: int, amount: int, unit: str, expected: dt.date) -> None:
    assert shift_date(day, sign, amount, unit) == expected


def test_age_comparison_on_dates() -> None:
    test = compile_("date_of_service >= patient.birth_date + 65 years")
    assert test({"date_of_service": dt.date(2020, 2, 1), "patient.birth_date": dt.date(1955, 2, 1)}) is True
    assert test({"date_of_service": dt.date(2020, 1, 31), "patient.birth_date": dt.date(1955, 2, 1)}) is False
