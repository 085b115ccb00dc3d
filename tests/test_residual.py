"""Partial evaluation (engine/evaluation/residual.py) agrees with evaluation: for every condition of the bundled
rules and any facts, what is left once some facts are given evaluates as the whole condition does,
and a condition settled early is settled for every request that gives those facts."""
from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from hypothesis import given, settings, strategies as st

import engine
from engine.language.compiler import Compiler
from engine.language.facts import CODE, DATE, FACTS, ICD, NUMBER
from engine.language.logic import Analysed, analyse
from engine.language.render import render
from engine.evaluation.residual import Partial, spelled
from engine.language.parser import parse_condition

ROOT = Path(__file__).resolve().parent.parent
RULES = engine.load(ROOT / "rules")
CONDITIONS: list[Analysed] = list({render(info.expr): info for policy in RULES.policy_versions()
                                   for info in (analyse(rule.when, policy.value_sets) for rule in policy.rules)}.values())


def _named(info: Analysed) -> dict[str, list[str]]:
    named: dict[str, list[str]] = {}
    for _, fact, text in info.setting_literals():
        named.setdefault(fact, []).append(text.rstrip("*").ljust(3, "1") if text.endswith("*") else text)
    return named


@st.composite
def cases(draw: st.DrawFn) -> tuple[Analysed, dict[str, Any], dict[str, Any], frozenset[str]]:
    info = draw(st.sampled_from(CONDITIONS))
    named = _named(info)
    full: dict[str, Any] = {}
    absent: set[str] = set()
    for name in sorted(engine.language.ast.facts_of(info.expr) | {n.fact.name for n in engine.language.logic.walk(info.expr)
                                                          if isinstance(n, engine.language.ast.Known)}):
        spec = FACTS[name]
        if draw(st.booleans()) and name not in ("payer", "date_of_service", "code"):
            if draw(st.booleans()):
                absent.add(name)
            continue
        if spec.type == NUMBER:
            value: Any = draw(st.integers(0, 100))
        elif spec.type == DATE:
            value = draw(st.dates(dt.date(2015, 1, 1), dt.date(2032, 1, 1)))
        else:
            choices = named.get(name, []) + (["70450", "15823", "E0601", "L1832"] if spec.type in (CODE, ICD) else ["zz"])
            value = draw(st.sampled_from(choices))
        full[name] = frozenset({value}) if spec.many else value
    given_names = draw(st.sets(st.sampled_from(sorted(full)))) if full else set()
    return info, full, {n: full[n] for n in given_names}, frozenset(absent)


@settings(max_examples=400, deadline=None)
@given(cases())
def test_the_residual_evaluates_as_the_whole_condition(case: tuple[Analysed, dict[str, Any], dict[str, Any],
                                                                   frozenset[str]]) -> None:
    info, full, partial_facts, absent = case
    whole = Compiler(info.checked).test(info.expr)(full)
    left = Partial(partial_facts, absent).of(info)
    if isinstance(left, bool):
        assert whole == left, (render(info.expr), partial_facts)
    else:
        assert Compiler(info.checked).test(left)(full) == whole, (render(info.expr), render(left), full)


def test_value_sets_are_written_out_and_the_spelled_text_parses_again() -> None:
    info = analyse("place_of_service in hospital and not (code in {70450})", {"hospital": ("19", "22")})
    text = render(spelled(info.expr, info.value_sets))
    assert text == 'place_of_service in {"19", "22"} and not code in {70450}'
    assert render(parse_condition(text)) == text


def test_known_is_settled_by_given_and_absent_facts_only() -> None:
    info = analyse("known(type_of_bill) and type_of_bill not in {\"13*\"}", {})
    assert Partial({}).of(info) == info.expr
    assert Partial({}, frozenset({"type_of_bill"})).of(info) is False
    assert Partial({"type_of_bill": "131"}).of(info) is False
    assert Partial({"type_of_bill": "111"}).of(info) is True
