"""The type checker: unknown facts, type mismatches and malformed literals fail at load time."""
from __future__ import annotations

import pytest

from engine.language.checker import Checker
from engine.errors import ConditionError
from engine.language.parser import parse_condition


def check(text: str, value_sets: dict[str, list[str]] | None = None) -> None:
    Checker(value_sets).check(parse_condition(text))


@pytest.mark.parametrize("text", [
    "place_of_service in {\"19\", \"22\"}",
    "type_of_bill in {\"13*\"}",
    "code in {15820-15823, J0585, K0813-K0829}",
    "diagnoses overlaps {H02.83*, G43.701}",
    "other_codes overlaps {64612, 64615}",
    "modifiers contains \"50\"",
    "patient.age >= 65 and patient.sex == \"female\"",
    "date_of_service >= 2020-07-01 and date_of_service <= 2020-07-01 + 1 year",
    "known(place_of_service) or units > 1.5",
    "code == 15823 or code == \"J0585\"",
])
def test_well_typed_conditions_pass(text: str) -> None:
    check(text)


@pytest.mark.parametrize("text, code, column, fragment", [
    ("place_of_servce == \"11\"", "E-unknown-fact", 1, "did you mean 'place_of_service'"),
    ("date_of_service >= 2024", "E-type", 20, "date_of_service is a date"),
    ("units == \"two\"", "E-type", 10, "units is a number, but \"two\" is a string literal"),
    ("code in {1582X}", "E-literal", 10, "not a valid CPT or HCPCS code"),
    ("code in {K0829-K0813}", "E-literal", 10, "runs backwards"),
    ("code in {15820-J0585}", "E-literal", 10, "different shapes"),
    ("diagnoses in {H02.83*}", "E-type", 1, "use 'overlaps' (any of a set) or 'contains' (one value)"),
    ("diagnoses overlaps {H0*2}", "E-literal", 21, "not a valid icd"),
    ("code in {J05*}", "E-literal", 10, "only allowed for ICD-10-CM"),
    ("units", "E-type", 1, "must be true or false"),
    ("place_of_service < \"22\"", "E-type", 1, "needs numbers or dates"),
    ("units > 1 and 3", "E-type", 15, "expected a condition"),
    ("place_of_service in opd_pos", "E-unknown-value-set", 21, "did you mean 'opd'"),
    ("patient.sex + 1 day == \"f\"", "E-type", 1, "only dates can be shifted"),
    ("diagnoses contains 15823", "E-literal", 20, "not a valid icd"),
])
def test_mistakes_are_located_and_explained(text: str, code: str, column: int, fragment: str) -> None:
    with pytest.raises(ConditionError) as info:
        check(text, {"opd": ["19", "22"]})
    assert info.value.code == code
    assert info.value.column == column
    assert fragment in info.value.message


def test_value_set_members_are_checked_against_the_type_they_are_used_with() -> None:
    with pytest.raises(ConditionError) as info:
        check("code in drugs", {"drugs": ["J0585", "not-a-code"]})
    assert info.value.code == "E-literal" and "value set 'drugs'" in info.value.message


def test_checker_records_which_value_sets_are_used() -> None:
    checker = Checker({"a": ["19"], "b": ["22"]})
    checker.check(parse_condition("place_of_service in a"))
    assert checker.used_value_sets == {"a"}


@pytest.mark.parametrize("text, column, names, fix", [
    ('patient.age >= "65"', 16, "patient.age is a number", "write `patient.age >= 65`"),
    ('date_of_service < "2024-01-01"', 19, "date_of_service is a date", "write `date_of_service < 2024-01-01`"),
    ('diagnoses == "M54.5"', 1, "diagnoses is a set of icd",
     'write `diagnoses contains "M54.5"` (one value) or `diagnoses overlaps {...}` (any of a set)'),
    ("place_of_service == 22", 21, "place_of_service is a string", 'write `place_of_service == "22"`'),
    ("modifiers contains 59", 20, "modifiers is a set of string", 'write `modifiers contains "59"`'),
    ('date_of_service - 30 days > "2024-01-01"', 29, "`date_of_service - 30 days` is a date",
     "write `date_of_service - 30 days > 2024-01-01`"),
])
def test_type_errors_name_the_fact_its_type_and_the_fix(text: str, column: int, names: str, fix: str) -> None:
    """Regression (issue 15, item 8): type errors named no fact, suggested nothing, and a number
    compared with a string fact was accepted silently."""
    with pytest.raises(ConditionError) as info:
        check(text)
    assert (info.value.code, info.value.column) == ("E-type", column)
    assert info.value.message.startswith(names) and info.value.message.endswith(fix)
