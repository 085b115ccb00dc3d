"""Generated policy programs: hostile rule text never reaches the generated source, and every
generated condition answers exactly as the reference closures of engine/language/compiler.py do."""
from __future__ import annotations

import ast as pyast
import datetime as dt
import functools
import gc
import io
import keyword
import re
import tokenize
import types
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import engine
from engine.language import codegen
from engine.language.checker import Checker
from engine.language.compiler import Compiler
from engine.language.facts import ALWAYS, FACTS, OpenSet
from engine.language.parser import parse_condition

ROOT = Path(__file__).resolve().parent.parent
#: Names the generator may write: its own temporaries, constants, helpers, and the few it binds.
GENERATED_NAME = re.compile(r"^(_t\d+|_k\d+|_h\d+|ctx|get|pending|r|rules|condition|_shift|_found|any|map|float"
                            r"|isdisjoint|__contains__)$")
HOSTILE = [
    "__import__('os').system('touch /tmp/pwned')", "\"); import os; os._exit(3); (\"", "'''", '\\x00\\n',
    "{__class__}", "ctx['code']", "get('x') or True", "\\u2028 lambda: 0", "exec", "#", "\\",
]


def _closure(text: str, value_sets: dict[str, Any] | None = None):  # type: ignore[no-untyped-def]
    expr = parse_condition(text)
    return Compiler(Checker(value_sets).check(expr)).test(expr)


def _source(conditions: list[str], value_sets: dict[str, Any] | None = None) -> tuple[str, codegen._Module]:
    source, module = codegen.rules_source(conditions, value_sets or {})
    return "\n".join([*module.helpers, source]), module


def _assert_only_generated(source: str, allowed_strings: set[object]) -> None:
    """Every name in ``source`` is generated or a keyword; every string is a catalogue name or a typed literal."""
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.NAME:
            assert keyword.iskeyword(token.string) or GENERATED_NAME.match(token.string), token.string
        elif token.type == tokenize.STRING:
            assert pyast.literal_eval(token.string) in allowed_strings, token.string
        elif token.type == tokenize.COMMENT:
            pytest.fail(f"a comment in generated code: {token.string}")


def _allowed(*values: object) -> set[object]:
    return {*FACTS, "day", "week", "month", "year", *values}


@pytest.mark.parametrize("hostile", HOSTILE)
def test_hostile_rule_text_reaches_generated_code_only_as_the_repr_of_a_typed_value(hostile: str) -> None:
    quoted = '"' + hostile.replace("\\", "\\\\").replace('"', '\\"') + '"'
    conditions = [f"place_of_service == {quoted}", f"provider.specialty in {{{quoted}, 'x'}}",
                  f"modifiers contains {quoted} or not known(state)", "patient.sex in hostile"]
    value_sets = {"hostile": [hostile, "__builtins__"]}
    source, module = _source(conditions, value_sets)
    expected = parse_condition(f"place_of_service == {quoted}").right.text  # type: ignore[attr-defined]
    _assert_only_generated(source, _allowed(expected))
    assert expected in module.constants.values() or repr(expected) in source
    rules = codegen.compile_rules(conditions, value_sets)
    assert rules({"place_of_service": expected, "modifiers": frozenset(), "provider.exemptions": frozenset()})[0] == 0
    assert rules({"patient.sex": hostile, "modifiers": frozenset(), "state": "NY"})[0] == 3


def test_value_set_names_and_fact_names_from_rule_text_never_appear_in_generated_code() -> None:
    source, module = _source(["patient.sex in import_os_system or diagnoses overlaps __class__"],
                             {"import_os_system": ["f"], "__class__": ["E11.9"]})
    assert "import_os_system" not in source and "__class__" not in source
    _assert_only_generated(source, _allowed())
    assert set(module.constants) == {"_k0", "_k1"}


def test_generated_code_has_no_builtins_beyond_the_ones_it_names() -> None:
    rules = codegen.compile_rules(["units > 1"], {})
    assert set(rules.__globals__["__builtins__"]) == {"any", "map", "float"}


@pytest.mark.parametrize("value", [float("inf"), -float("inf"), 1.5, 0, True, "a'b\"c"])
def test_literals_are_written_as_the_repr_of_their_typed_value(value: object) -> None:
    assert eval(codegen.literal(value), {"__builtins__": {"float": float}}) == value  # noqa: S307


@pytest.mark.parametrize("value", [frozenset({"a"}), dt.date(2024, 2, 29)])
def test_values_of_other_types_are_never_written_as_literals(value: object) -> None:
    with pytest.raises(TypeError):
        codegen.literal(value)


def test_a_date_is_bound_to_a_generated_name_built_once() -> None:
    source, module = codegen.rules_source(["date_of_service >= 2024-01-01"], {})
    assert "2024" not in source and list(module.constants.values()) == [dt.date(2024, 1, 1)]


def test_a_condition_nested_deeper_than_python_source_allows_still_compiles_and_agrees() -> None:
    text = "not " * 250 + "patient.age > 1"  # deeper than the 200 parentheses Python source may nest
    program = codegen.compile_condition(text, {})
    assert program({"patient.age": 2}) is True and program({"patient.age": 0}) is False and program({}) is None
    deep = "not " * 60 + "(patient.age > 1 and (state == 'NY' or units > 3))"
    assert codegen.compile_condition(deep, {})({"units": 1.0}) is _closure(deep)({"units": 1.0})


def test_a_policy_program_is_compiled_on_first_use_and_then_kept() -> None:
    built: list[int] = []

    def build():  # type: ignore[no-untyped-def]
        built.append(1)
        return lambda ctx: (0, ())
    lazy = codegen.Lazy(build)
    assert lazy.run({}) == (0, ()) and lazy.run({}) == (0, ()) and built == [1]


# Conditions of the bundled rules, and forms covering every node kind, against random facts.
def _bundled_conditions() -> list[tuple[str, dict[str, tuple[str, ...]]]]:
    rules = engine.load(ROOT / "tests" / "fixtures" / "decisions" / "bundled-rules")
    found = {}
    for policy in rules.policy_versions():
        texts = [r.when for r in policy.rules]
        texts += [ref.when for o in [policy.default, *(r.outcome for r in policy.rules)] for ref in o.documentation
                  if ref.when]
        for text in texts:
            found[(text, tuple(sorted(policy.value_sets.items())))] = (text, dict(policy.value_sets))
    return list(found.values())


FORMS = [
    ("true", {}), ("false or not known(patient.sex)", {}), ("known(code) and known(stage)", {}),
    ("date_of_service >= 2024-01-01 and date_of_service < patient.birth_date + 65 years", {}),
    ("patient.birth_date - 3 months <= 2000-01-01", {}), ("units >= 2 or units != 1.5", {}),
    ("code in {64490, 64491-64495, J0541} and not (system == 'HCPCS')", {}),
    ("code not in wide", {"wide": ["10000-19999"]}), ("diagnoses overlaps {H02.83*, M54.5, E11.9}", {}),
    ("diagnoses overlaps dx", {"dx": ["E11.9", "M54.50"]}), ("other_codes overlaps {15823, 15820-15822}", {}),
    ("modifiers contains 'RT' or provider.exemptions contains 'gold-card'", {}),
    ("provider.exemptions overlaps {gold-card} or modifiers overlaps {50, LT}", {}),
    ("patient.age in {18, 65} or patient.age > 64.5", {}), ("state in {NY, CA} and type_of_bill in {13*}", {}),
    ("(place_of_service == '22' or place_of_service == '19') and (stage == 'trial' or not known(stage))", {}),
    ("trial_place_of_service != place_of_service", {}), ("provider.network == 'in' and patient.sex != 'male'", {}),
    ("other_codes contains '15823' or not (request_codes overlaps {64490})", {}),
    ("not (other_codes overlaps {15820, 64490}) and code in {J0541, 15823}", {}),
]
CONDITIONS = _bundled_conditions() + FORMS

_VALUES: dict[str, Any] = {
    "payer": st.sampled_from(["medicare", "acme"]), "plan": st.sampled_from(["ma", "commercial"]),
    "date_of_service": st.dates(dt.date(2018, 1, 1), dt.date(2027, 1, 1)),
    "place_of_service": st.sampled_from(["11", "19", "21", "22", "24"]),
    "type_of_bill": st.sampled_from(["131", "13X", "111"]), "state": st.sampled_from(["NY", "CA", "AL"]),
    "patient.age": st.integers(0, 100), "patient.birth_date": st.dates(dt.date(1920, 1, 1), dt.date(2025, 1, 1)),
    "patient.sex": st.sampled_from(["female", "male"]),
    "diagnoses": st.frozensets(st.sampled_from(["H02831", "M5450", "E119", "R519", "G4370", "M4781"]), max_size=3),
    "provider.npi": st.just("1234567893"), "provider.specialty": st.sampled_from(["207R00000X", "x"]),
    "provider.network": st.sampled_from(["in", "out"]),
    "provider.exemptions": st.frozensets(st.sampled_from(["gold-card", "x"]), max_size=2),
    "code": st.sampled_from(["64490", "64493", "J0541", "15823", "10500", "E0601", "0275T"]),
    "system": st.sampled_from(["CPT", "HCPCS"]), "modifiers": st.frozensets(st.sampled_from(["RT", "LT", "50"]), max_size=2),
    "units": st.sampled_from([0.0, 1.0, 1.5, 2.0, 4.0]), "stage": st.sampled_from(["trial", "permanent", "initial"]),
    "trial_place_of_service": st.sampled_from(["11", "22"]),
    "revenue_code": st.sampled_from(["0450", "0459", "0360"]), "provider.type": st.sampled_from(["va", "ihs", "x"]),
    "round_trips_in_10_days": st.sampled_from([0.0, 2.0, 3.0, 6.0]), "round_trip_weeks": st.sampled_from([1.0, 3.0]),
    "other_codes": st.frozensets(st.sampled_from(["15820", "15823", "64490", "J0541"]), max_size=3).flatmap(
        lambda codes: st.sampled_from([codes, OpenSet(codes)])),
    "request_codes": st.frozensets(st.sampled_from(["15820", "15823", "64490", "J0541"]), max_size=3),
}


@st.composite
def contexts(draw: st.DrawFn) -> dict[str, Any]:
    ctx = {}
    for name, values in _VALUES.items():
        if name in ALWAYS or draw(st.booleans()):
            ctx[name] = draw(values)
    return ctx


@functools.cache
def _compiled_conditions() -> list[tuple[str, Any, Any]]:
    """Each of CONDITIONS with its generated function and its reference closure, compiled once: the
    property runs them on every example (compiling them for each cost seconds)."""
    return [(text, codegen.compile_condition(text, value_sets), _closure(text, value_sets))
            for text, value_sets in CONDITIONS]


@settings(max_examples=150, deadline=None)
@given(contexts())
def test_every_generated_condition_answers_as_the_reference_closure(ctx: dict[str, Any]) -> None:
    for text, generated, closure in _compiled_conditions():
        assert generated(ctx) is closure(ctx), text


@settings(max_examples=100, deadline=None)
@given(contexts(), st.lists(st.sampled_from(range(len(FORMS))), min_size=1, max_size=6),
       st.lists(st.lists(st.sampled_from(range(len(FORMS))), max_size=2), max_size=7))
def test_a_policy_program_finds_the_first_rule_that_holds_the_unknown_ones_before_it_and_its_documentation_conditions(
        ctx: dict[str, Any], picks: list[int], documentation: list[list[int]]) -> None:
    texts = [FORMS[i][0] for i in picks]
    outcomes = [tuple(FORMS[i][0] for i in doc) for doc in documentation[:len(texts) + 1]]
    value_sets = {name: items for i in [*picks, *sum(documentation, [])] for name, items in FORMS[i][1].items()}
    results = [_closure(text, value_sets)(ctx) for text in texts]
    decisive = next((i for i, r in enumerate(results) if r is True), len(texts))
    unknown = tuple(i for i, r in enumerate(results[:decisive]) if r is None)
    states = tuple(_closure(text, value_sets)(ctx) for text in (outcomes[decisive] if decisive < len(outcomes) else ()))
    assert codegen.compile_rules(texts, value_sets, outcomes)(ctx) == (decisive, unknown, states)


def test_a_decision_builder_gives_fresh_containers_its_fields_first_and_its_holes_filled() -> None:
    template = {"pa_needed": "auth-needed", "documentation": [{"id": "x", "text": "it's \"quoted\""}],
                "reasons": ["kept"], "info_needed": [], "n": 1.5, "none": None, "flag": True}
    build = codegen.compile_builder(("code", "system"), template, ("reasons",))
    first, second = build("15823", "CPT", ["one"]), build("J0541", "HCPCS", ["two"])
    assert list(first) == ["code", "system", *template] and first["reasons"] == ["one"]
    assert {**first, "code": None, "system": None, "reasons": ["kept"]} == {"code": None, "system": None, **template}
    first["documentation"][0]["id"] = "changed"
    assert second["documentation"][0]["id"] == "x" and second["code"] == "J0541"


def test_regression_an_unused_program_outlived_its_rule_set_outside_the_collector() -> None:
    """A Lazy referred to itself until first run, so a reloaded rule set's unused programs were
    freed only by the cycle collector, and never in a worker that froze them out of its scans."""
    freed: list[bool] = []

    class Build:
        def __call__(self) -> Any:
            return lambda: None

        def __del__(self) -> None:
            freed.append(True)

    gc.disable()
    try:
        lazy = codegen.Lazy(Build())
        del lazy
        assert freed == [True]
        used = codegen.Lazy(Build())
        used.run()
        del used
        assert freed == [True, True]
    finally:
        gc.enable()


def test_a_rule_set_that_has_answered_is_freed_by_reference_counting_alone() -> None:
    """Generated programs and decision builders hold no reference cycle, so a replaced rule set goes
    at once, also in a worker that keeps the collector off what it loaded (gc.freeze)."""
    rules = engine.load(Path(__file__).resolve().parent.parent / "rules")
    requests = [{"payer": "medicare", "place_of_service": "22", "services": [{"code": "15823"}]},
                {"payer": "medicare", "services": [{"code": "J0585"}, {"code": "64612"}]},
                {"payer": "medicare", "services": [{"code": "99213"}]}]
    for body in requests:  # compile the programs and builders these need, and first-use library state
        rules.evaluate(body)
    gc.collect()
    gc.disable()
    try:
        for body in requests:
            rules.evaluate({**body, "date_of_service": "2024-02-01"})  # more builders, compiled now
        del rules
        gc.set_debug(gc.DEBUG_SAVEALL)  # keep what a collection finds, to see whose it is
        gc.collect()
        # other threads of the test process (xdist's, servers of other tests) may leave cycles of their own
        ours = [o for o in gc.garbage if _of_covreq(o)]
        assert ours == []
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()


def _of_covreq(thing: object) -> bool:
    """Whether ``thing`` is an object of covreq's library or of code it generated."""
    if isinstance(thing, types.FunctionType):
        return thing.__code__.co_filename == "<covreq policy>" or (thing.__module__ or "").startswith("engine")
    return type(thing).__module__.startswith("engine")
