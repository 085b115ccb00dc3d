"""Hostile inputs are refused quickly, with a clear error, within the documented limits.

The time bound is a guard against hangs, not a benchmark.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from fastapi.testclient import TestClient

import engine
from engine.language.codes import RANGE_LIMIT
from engine.loading.loader import read_tree
from engine.language.parser import MAX_CONDITION_LENGTH, MAX_NESTING
from engine.evaluation.request import MAX_ITEMS, MAX_LINES, MAX_TEXT
from engine.loading.yamlsource import MAX_DEPTH, MAX_FILE_BYTES, MAX_VALUES
from service import Settings, create_app

HANG_GUARD = 2.0  # seconds of CPU time
ROOT = Path(__file__).resolve().parent.parent
SERVICE_FIXTURES = ROOT / "tests" / "service" / "fixtures"
POLICY = """id: hostile
title: Hostile test
payer: acme
effective: 2024-01-01
source: {{url: "https://example.org/p"}}
codes: [{codes}]
rules:
  - when: {when}
    pa_needed: auth-needed
    reason: Needs review.
"""
REQUEST = {"payer": "medicare", "date_of_service": "2024-03-14", "place_of_service": "22",
           "services": [{"code": "15823"}]}


@pytest.fixture(scope="module")
def bundled() -> engine.RuleSet:
    return engine.load(ROOT / "rules")


def quickly(action: Callable[[], Any]) -> Any:
    """Run ``action`` and assert it ends within the hang guard of CPU time (this process's work, so
    that a busy machine does not make it miss); return what it returned."""
    began = time.process_time()
    result = action()
    assert time.process_time() - began < HANG_GUARD, "took too long"
    return result


def problems(tmp_path: Path, text: str) -> list[str]:
    """``code: message`` of each problem of a tree holding one file with ``text``."""
    (tmp_path / "p.yaml").write_text(text)
    return [f"{p.code}: {p.message}" for p in quickly(lambda: read_tree(tmp_path).problems)]


def refused(ruleset: engine.RuleSet, request: dict[str, Any]) -> engine.RequestError:
    with pytest.raises(engine.RequestError) as caught:
        quickly(lambda: ruleset.evaluate(request))
    assert len(str(caught.value)) < 300, "the error must not echo the input"
    return caught.value


def _laughs(levels: int = 9) -> str:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for level in range(1, levels):
        lines.append(f"a{level}: &a{level} [" + ", ".join([f"*a{level - 1}"] * 10) + "]")
    return "\n".join(lines) + "\n"


# Rule files -------------------------------------------------------------------------------------

@pytest.mark.parametrize("text", [_laughs(), _laughs(30), "id: &a [x, *a]\n", "id: &a {b: *a}\n"])
def test_a_yaml_alias_bomb_or_cycle_is_refused(tmp_path: Path, text: str) -> None:
    assert problems(tmp_path, text) == [f"E-yaml-too-large: file expands to more than {MAX_VALUES} values (aliases?)"]


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 5000])
def test_very_deep_yaml_nesting_is_refused(tmp_path: Path, depth: int) -> None:
    (problem,) = problems(tmp_path, "id: " + "[" * depth + "]" * depth + "\n")
    assert problem.startswith("E-yaml-too-deep: YAML nests")


def test_deep_block_nesting_is_refused(tmp_path: Path) -> None:
    text = "".join("  " * level + f"k{level}:\n" for level in range(200)) + "  " * 200 + "leaf: 1\n"
    (problem,) = problems(tmp_path, text)
    assert problem.startswith("E-yaml-too-deep")


def test_a_huge_file_is_refused_without_being_read(tmp_path: Path) -> None:
    with open(tmp_path / "huge.yaml", "wb") as handle:
        handle.truncate(4_000_000_000)  # sparse: 4 GB that would not fit in memory twice
    assert problems(tmp_path, "id: x\n") != []  # p.yaml is invalid too; look at huge.yaml
    huge = [p for p in read_tree(tmp_path).problems if p.path.endswith("huge.yaml")]
    assert [(p.code, p.message) for p in huge] == [
        ("E-file-too-large", f"file is larger than the limit of {MAX_FILE_BYTES} bytes")]


def test_a_huge_allowed_code_range_loads_and_answers_quickly(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(POLICY.format(codes="10000-99999", when="true"))
    ruleset = quickly(lambda: engine.load(tmp_path))
    answer = quickly(lambda: ruleset.evaluate({"payer": "acme", "services": [{"code": "54321"}] * MAX_LINES}))
    assert {d["pa_needed"] for d in answer["decisions"]} == {"auth-needed"}


def test_a_code_range_past_the_limit_is_refused(tmp_path: Path) -> None:
    (problem,) = problems(tmp_path, POLICY.format(codes="15823", when="diagnoses overlaps {A000000-A999999}"))
    assert f"spans 1000000 codes, more than the limit of {RANGE_LIMIT}" in problem


def test_a_very_long_condition_is_refused(tmp_path: Path) -> None:
    when = " or ".join(['place_of_service == "22"'] * 200)
    (problem,) = problems(tmp_path, POLICY.format(codes="15823", when=json.dumps(when)))
    assert problem == f"E-condition-too-long: condition is {len(when)} characters long; the limit is {MAX_CONDITION_LENGTH}"


@pytest.mark.parametrize("when", ["(" * 40 + "true" + ")" * 40, "not " * 900 + "true",
                                  " and ".join(["(not (true or (false and (true or"] * 12) + " true" + ")))" * 12])
def test_a_deeply_nested_condition_is_refused(tmp_path: Path, when: str) -> None:
    (problem,) = problems(tmp_path, POLICY.format(codes="15823", when=json.dumps(when)))
    assert problem.startswith("E-condition-too-deep")
    if when.startswith("((("):
        assert problem.endswith(f"parentheses nest deeper than {MAX_NESTING} levels")


# Requests (library) -----------------------------------------------------------------------------

def test_thousands_of_service_lines_are_refused(bundled: engine.RuleSet) -> None:
    error = refused(bundled, {**REQUEST, "services": [{"code": "15823"}] * 50_000})
    assert (error.location, error.message) == ("services", f"has 50000 lines; the limit is {MAX_LINES}")


def test_the_largest_request_allowed_is_answered_quickly(bundled: engine.RuleSet) -> None:
    request = {**REQUEST, "diagnoses": [f"H02.{n:03d}" for n in range(MAX_ITEMS)], "explain": True,
               "services": [{"code": f"{15000 + n}", "modifiers": ["50"] * 10} for n in range(MAX_LINES)]}
    assert len(quickly(lambda: bundled.evaluate(request))["decisions"]) == MAX_LINES


@pytest.mark.parametrize("field, request_part, message", [
    ("date_of_service", {"date_of_service": "9999-12-31"}, "9999-12-31 is outside the years 1900-2200"),
    ("date_of_service", {"date_of_service": "0001-01-01"}, "0001-01-01 is outside the years 1900-2200"),
    ("date_of_service", {"date_of_service": "+275760-09-13"}, "'+275760-09-13' is not a date written YYYY-MM-DD"),
    ("date_of_service", {"date_of_service": "2024-02-30"}, "'2024-02-30' is not a real calendar date"),
    ("patient.birth_date", {"patient": {"birth_date": "2100-01-01"}}, "2100-01-01 is after the date of service 2024-03-14"),
    ("authorizations[0].end", {"authorizations": [{"id": "A", "start": "2024-01-01", "end": "3000-01-01"}]},
     "3000-01-01 is outside the years 1900-2200"),
])
def test_absurd_dates_are_refused(bundled: engine.RuleSet, field: str, request_part: dict[str, Any], message: str) -> None:
    error = refused(bundled, {**REQUEST, **request_part})
    assert (error.location, error.message) == (field, message)


HUGE = "9" * 10_000_000


@pytest.mark.parametrize("field, request_part", [
    ("payer", {"payer": HUGE}), ("services[0].code", {"services": [{"code": HUGE}]}),
    ("date_of_service", {"date_of_service": HUGE}), ("plan", {"plan": HUGE}),
    ("diagnoses[0]", {"diagnoses": [HUGE]}), ("(top level)", {HUGE: 1}),
])
def test_huge_strings_are_refused_without_being_echoed(bundled: engine.RuleSet, field: str,
                                                       request_part: dict[str, Any]) -> None:
    error = refused(bundled, {**REQUEST, **request_part})
    assert error.location == field and error.message == f"is 10000000 characters long; the limit is {MAX_TEXT}"


@pytest.mark.parametrize("field", ["diagnoses", "provider.exemptions", "authorizations", "services[0].modifiers"])
def test_huge_lists_are_refused(bundled: engine.RuleSet, field: str) -> None:
    many: list[Any] = [{"id": "A", "start": "2024-01-01"}] * 100_000 if field == "authorizations" else ["X"] * 100_000
    request = {**REQUEST, "services": [{"code": "15823", "modifiers": many}]} if "modifiers" in field else \
        {**REQUEST, "provider": {"exemptions": many}} if "provider" in field else {**REQUEST, field: many}
    error = refused(bundled, request)
    assert (error.location, error.message) == (field, f"has 100000 entries; the limit is {MAX_ITEMS}")


# Requests (service) -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    settings = Settings(payers=SERVICE_FIXTURES / "payers.yaml", audit_path=tmp_path_factory.mktemp("audit") / "a.jsonl")
    with TestClient(create_app(str(SERVICE_FIXTURES / "rules"), settings)) as test_client:
        yield test_client


@pytest.mark.parametrize("path", ["/v1/requirements", "/cds-services/order-sign-crd"])
@pytest.mark.parametrize("body, status", [
    (b"[" * 500_000, 400), (b'{"payer": ' + b'{"a": ' * 100_000 + b"1" + b"}" * 100_001, 400),
    (b" " * 2_000_000, 413), (json.dumps({"payer": "acme", "services": [{"code": "15823"}] * 20_000}).encode(), 422),
])
def test_hostile_bodies_get_a_4xx_quickly(client: TestClient, path: str, body: bytes, status: int) -> None:
    response = quickly(lambda: client.post(path, content=body, headers={"content-type": "application/json"}))
    expected = 400 if status == 422 and path.startswith("/cds") else status  # CDS: not a hook call
    assert response.status_code == expected
    assert len(response.content) < 2000
