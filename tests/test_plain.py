"""Conditions in plain English (engine/language/plain.py): the wording of each kind of node, and, over generated
conditions, that every one renders, leaks no rule syntax and names every code and value set it reads."""
from __future__ import annotations

import re
from typing import Mapping, Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.language import ast
from engine.language.facts import FACTS
from engine.language.parser import parse_condition
from engine.language.plain import needed_when, wording

SETS = {"malignant_vcf": ("C79.51", "C90.0*", "C41.2"), "opd_pos": ("19", "22"), "mri_codes": ("70551-70553",)}
TITLES = {"malignant_vcf": "malignant vertebral compression fracture", "mri_codes": "MRI of the brain"}


def words(text: str, sets: Mapping[str, Sequence[str]] = SETS, titles: Mapping[str, str] = TITLES) -> str:
    return needed_when([text], sets, titles)


def test_the_issue_example_reads_unless_with_the_title_and_every_code() -> None:
    assert words("not (diagnoses overlaps malignant_vcf)") == \
        "unless a diagnosis is a malignant vertebral compression fracture (C79.51, C90.0*, C41.2)"


@pytest.mark.parametrize("text, expected", [
    ("patient.age >= 65", "when the patient's age is 65 or more"),
    ("patient.age < 18", "when the patient's age is less than 18"),
    ("units <= 2", "when the number of units is 2 or less"),
    ("units > 2", "when the number of units is more than 2"),
    ("65 > patient.age", "when the patient's age is less than 65"),  # the fact is put first
    ("date_of_service >= 2021-02-01", "when the date of service is on or after 2021-02-01"),
    ("date_of_service < 2021-02-01", "when the date of service is before 2021-02-01"),
    ("date_of_service + 30 days <= 2024-01-01", "when 30 days after the date of service is on or before 2024-01-01"),
    ("date_of_service > patient.birth_date + 1 year",
     "when the date of service is after 1 year after the patient's date of birth"),
    ('patient.sex == "female"', "when the patient's sex is female"),
    ('plan != "gold"', "when the plan is not gold"),
    ('place_of_service == "11"', "when the place of service is 11 (office)"),
    ("code in mri_codes", "when the billing code is an MRI of the brain (70551-70553)"),
    ("place_of_service in opd_pos", "when the place of service is one of the opd pos (19, 22)"),
    ('state not in {"CA", "FL"}', "when the state is not one of CA, FL"),
    ('type_of_bill in {"13*"}', "when the type of bill is 13*"),
    ('modifiers contains "RT"', "when the modifiers include RT"),
    ("known(type_of_bill)", "when the type of bill is known"),
    ("not known(diagnoses)", "unless the diagnoses are known"),
    ("other_codes overlaps {J0585-J0588}", "when a code elsewhere on the order is J0585-J0588"),
    ("true", "always"),
])
def test_each_kind_of_predicate_has_its_words(text: str, expected: str) -> None:
    assert words(text) == expected


@pytest.mark.parametrize("text, expected", [
    ("not (patient.age < 18) and units > 1", "when the patient's age is 18 or more and the number of units is more than 1"),
    ("units > 1 and not (diagnoses overlaps {C41.2})", "when the number of units is more than 1 and no diagnosis is C41.2"),
    ('units > 1 and not (state in {"CA"} or modifiers contains "RT")',
     "when the number of units is more than 1 and the state is not CA and the modifiers do not include RT"),
    ('units > 1 and not (state == "CA" and state == "FL")',
     "when the number of units is more than 1, and either the state is not CA or the state is not FL"),
    ("units > 1 and not known(plan)", "when the number of units is more than 1 and the plan is not known"),
    ("units > 1 and not false", "when the number of units is more than 1 and always"),
    ("not (date_of_service >= 2024-01-01) or units == 3",
     "when the date of service is before 2024-01-01 or the number of units is 3"),
])
def test_negations_are_pushed_down_to_the_predicates(text: str, expected: str) -> None:
    assert words(text) == expected


@pytest.mark.parametrize("text, expected", [
    ("not not (units > 1)", "when the number of units is more than 1"),
    ('not (state not in {"CA"})', "when the state is CA"),
    ('not (plan != "gold")', "when the plan is gold"),
    ('not (plan == "gold")', "unless the plan is gold"),
])
def test_a_negated_negation_reads_when_never_unless_not(text: str, expected: str) -> None:
    assert words(text) == expected


def test_mixed_and_and_or_read_unambiguously() -> None:
    assert words('units > 1 and (state == "CA" or state == "FL")') == \
        "when the number of units is more than 1, and either the state is CA or the state is FL"
    assert words('(units > 1 and units < 5) or state == "CA"') == \
        "when both the number of units is more than 1 and the number of units is less than 5, or the state is CA"
    assert words('units > 1 and (state == "CA" or state == "FL" or state == "NY")').endswith(
        ", and any of the state is CA, the state is FL or the state is NY")


def test_several_conditions_read_as_one() -> None:
    assert needed_when(["place_of_service in opd_pos", "not (diagnoses overlaps malignant_vcf)"], SETS, TITLES) == (
        "when the place of service is one of the opd pos (19, 22) and no diagnosis is a malignant vertebral "
        "compression fracture (C79.51, C90.0*, C41.2)")


@pytest.mark.parametrize("title, reads", [("MRI of the brain", "an MRI of the brain"), ("CT scan", "a CT scan"),
                                          ("opioid", "an opioid"), ("unit dose", "a unit dose"),
                                          ("one of the imaging codes", "one of the imaging codes")])
def test_a_title_gets_a_or_an_unless_it_has_its_own_determiner(title: str, reads: str) -> None:
    assert words("code in mri_codes", titles={"mri_codes": title}) == f"when the billing code is {reads} (70551-70553)"


def test_every_fact_of_the_catalogue_has_a_title_and_each_multi_valued_one_a_member_noun() -> None:
    for spec in FACTS.values():
        assert spec.title.startswith("the "), spec.name
        assert bool(spec.member) == spec.many, spec.name


# --- generated conditions -------------------------------------------------------------------------

#: Words of the condition language that must never reach a reader.
SYNTAX = ("==", "!=", "<", ">", "{", "}", '"', "`", " overlaps ", " contains ", "known(", "not (", " not in ",
          "+ ", "- ")
KEYWORDS = re.compile(r"\b(true|false)\b")
SNAKE = re.compile(r"\b[a-z0-9]+_[a-z0-9_]+\b")
DOTTED = re.compile(r"\b[a-z]+\.[a-z_]+\b")
QUOTED = re.compile(r"(^|\s)'[^']*'")

names = st.from_regex(r"\A[a-z]{2,6}(_[a-z]{2,6}){1,2}\Z")
titles = st.none() | st.from_regex(r"\A[a-z]{3,9}( [a-z]{3,9}){0,3}\Z")
icd = st.from_regex(r"\A[A-TV-Z][0-9]{2}(\.[0-9A-Z]{1,3})?\*?\Z")
cpt = st.from_regex(r"\A[1-9][0-9]{4}\Z") | st.from_regex(r"\A[A-V][0-9]{4}\Z")
words_ = st.from_regex(r"\A[a-z]{1,8}(-[a-z]{1,8})?\Z").filter(lambda w: not KEYWORDS.search(w))
states = st.sampled_from(["CA", "FL", "NY", "TX", "PR"])
places = st.sampled_from(["11", "19", "22", "24", "99"])
numbers = st.integers(0, 120).map(str) | st.sampled_from(["2.5", "0.75"])
days = st.dates().map(lambda d: d.isoformat()).filter(lambda d: d >= "1900")
number_facts = st.sampled_from(["patient.age", "units", "round_trips_in_10_days", "round_trip_weeks"])
date_facts = st.sampled_from(["date_of_service", "patient.birth_date"])
text_facts = st.sampled_from(["plan", "patient.sex", "provider.network", "stage", "provider.specialty", "system"])
ops = st.sampled_from(["==", "!=", "<", "<=", ">", ">="])


def quoted(values: list[str]) -> str:
    return "{" + ", ".join(f'"{v}"' for v in values) + "}"


@st.composite
def value_sets(draw: st.DrawFn) -> dict[str, tuple[tuple[str, ...], str | None]]:
    """Three value sets, of ICD-10-CM codes, CPT/HCPCS codes and states, each maybe with a title."""
    kinds = draw(st.lists(names, min_size=3, max_size=3, unique=True))
    members = [st.lists(icd, min_size=1, max_size=5, unique=True), st.lists(cpt, min_size=1, max_size=5, unique=True),
               st.lists(states, min_size=1, max_size=5, unique=True)]
    return {name: (tuple(draw(items)), draw(titles)) for name, items in zip(kinds, members)}


#: Where generated conditions name the value sets of :func:`value_sets`, replaced by their names.
ICD_SET, CODE_SET, STATE_SET = "ICDSET", "CODESET", "STATESET"
atoms = st.one_of(
    st.builds(lambda f, o, n, flip: f"{n} {o} {f}" if flip else f"{f} {o} {n}", number_facts, ops, numbers,
              st.booleans()),
    st.builds(lambda f, o, d: f"{f} {o} {d}", date_facts, ops, days),
    st.builds(lambda f, s, n, u, o, d: f"{f} {s} {n} {u} {o} {d}", date_facts, st.sampled_from("+-"),
              st.integers(1, 30), st.sampled_from(["days", "weeks", "months", "years"]), ops, days),
    st.builds(lambda f, o, w: f'{f} {o} "{w}"', text_facts, st.sampled_from(["==", "!="]), words_),
    st.builds(lambda f, neg, ws: f"{f} {'not in' if neg else 'in'} {quoted(ws)}", text_facts, st.booleans(),
              st.lists(words_, min_size=1, max_size=3, unique=True)),
    st.builds(lambda p, neg: f"place_of_service {'not in' if neg else 'in'} {quoted(p)}",
              st.lists(places, min_size=1, max_size=3, unique=True), st.booleans()),
    st.builds(lambda neg: f"state {'not in' if neg else 'in'} {STATE_SET}", st.booleans()),
    st.builds(lambda codes: "diagnoses overlaps {" + ", ".join(codes) + "}",
              st.lists(icd, min_size=1, max_size=4, unique=True)),
    st.just(f"diagnoses overlaps {ICD_SET}"),
    st.builds(lambda neg: f"code {'not in' if neg else 'in'} {CODE_SET}", st.booleans()),
    st.builds(lambda codes: "other_codes overlaps {" + ", ".join(codes) + "}",
              st.lists(cpt, min_size=1, max_size=3, unique=True)),
    st.builds(lambda f, w: f'{f} contains "{w}"', st.sampled_from(["modifiers", "provider.exemptions"]), words_),
    st.builds(lambda f: f"known({f})", st.sampled_from(sorted(FACTS))),
    st.sampled_from(["true", "false"]),
)


compounds = st.recursive(atoms, lambda inner: st.one_of(
    st.builds(lambda a, op, b: f"({a}) {op} ({b})", inner, st.sampled_from(["and", "or"]), inner),
    st.builds(lambda a: f"not ({a})", inner)), max_leaves=8)


@st.composite
def conditions(draw: st.DrawFn) -> tuple[str, dict[str, tuple[tuple[str, ...], str | None]]]:
    sets = draw(value_sets())
    text = draw(compounds)
    for token, name in zip((ICD_SET, CODE_SET, STATE_SET), sets):
        text = text.replace(token, name)
    return text, sets


def involved(node: object) -> tuple[list[str], list[str], list[str]]:
    """The literal values, value set names and fact names a syntax tree reads."""
    values: list[str] = []
    sets: list[str] = []
    facts: list[str] = []
    pending = [node]
    while pending:
        current = pending.pop()
        if isinstance(current, ast.Literal) and current.kind != "bool":
            values.append(current.text)
        elif isinstance(current, ast.SetItem):
            values.append(current.text)
        elif isinstance(current, ast.ValueSetRef):
            sets.append(current.name)
        elif isinstance(current, ast.Fact):
            facts.append(current.name)
        elif isinstance(current, ast.Shift):
            values.append(str(current.amount))
        for value in vars(current).values() if hasattr(current, "__dict__") else ():
            pending.extend(v for v in (value if isinstance(value, tuple) else (value,)) if hasattr(v, "pos"))
    return values, sets, facts


@settings(max_examples=200, deadline=None)
@given(conditions())
def test_every_generated_condition_renders_without_rule_syntax_and_names_what_it_reads(
        case: tuple[str, dict[str, tuple[tuple[str, ...], str | None]]]) -> None:
    text, sets = case
    members = {name: items for name, (items, _) in sets.items()}
    named = {name: title for name, (_, title) in sets.items() if title}
    expr = parse_condition(text)
    said = wording(expr, members, named).clause(expr)
    assert said.split(" ", 1)[0] in ("when", "unless", "always", "never")
    for syntax in SYNTAX:
        assert syntax not in said, (syntax, text, said)
    assert not KEYWORDS.search(said.split(" ", 1)[1] if " " in said else ""), (text, said)
    assert not SNAKE.search(said) and not DOTTED.search(said) and not QUOTED.search(said), (text, said)
    values, refs, facts = involved(expr)
    for value in values:
        assert value in said, (value, text, said)
    for name in refs:
        assert (named.get(name) or name.replace("_", " ")) in said, (name, text, said)
        assert all(code in said for code in members[name]), (name, text, said)
    for fact in facts:
        assert FACTS[fact].title in said or FACTS[fact].member in said, (fact, text, said)
