"""Fuzzing the library end to end: random policy files through load and evaluate, random v1 requests.

The budget is CI-sized; ``COVREQ_FUZZ_EXAMPLES=5000 pytest tests/test_fuzz_*.py`` runs longer
(docs/operations.md, "Fuzzing").
"""
from __future__ import annotations

import datetime as dt
import os
import tempfile
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import engine
from engine.loading.loader import read_tree

ROOT = Path(__file__).resolve().parent.parent
#: Examples per property; ``COVREQ_FUZZ_EXAMPLES`` raises it for a longer run.
EXAMPLES = int(os.environ.get("COVREQ_FUZZ_EXAMPLES", "100"))
PA = ("auth-needed", "no-auth", "conditional", "satisfied", "unknown")
COVERED = ("covered", "not-covered", "conditional")
FUZZ = settings(max_examples=EXAMPLES, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

junk = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.text(max_size=10),
                 st.lists(st.integers(), max_size=2))


def mostly(good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any] = junk) -> st.SearchStrategy[Any]:
    """``good`` 24 times in 25, else ``bad``: many examples get past validation to evaluation."""
    return st.integers(0, 24).flatmap(lambda n: bad if n == 12 else good)  # not an end: those are drawn often


dates = mostly(st.dates(dt.date(1990, 1, 1), dt.date(2030, 12, 31)).map(dt.date.isoformat),
               st.sampled_from(["2024-02-30", "24-01-01", "", "2024-13-01"]))
service_codes = st.one_of(st.sampled_from(["15823", "15820", "67900", "70551", "74177", "77061", "E0100", "K0813",
                                           "L0648", "64490", "0274T"]),
                          st.from_regex(r"\A[0-9]{5}\Z"), st.from_regex(r"\A[A-V][0-9]{4}\Z"))
code_items = mostly(st.one_of(service_codes, st.sampled_from(["15820-15823", "70551-70553", "K0813-K0829",
                                                              "10000-99999"])),
                    st.sampled_from(["99999-10000", "A0000-B0001", "H02.83*", "x", "158"]))
typed_atoms = st.one_of(
    st.sampled_from(["22", "11", "19"]).map(lambda v: f'place_of_service == "{v}"'),
    st.just('place_of_service in {"19", "22"}'), st.just("place_of_service not in some_set"),
    st.integers(0, 120).map(lambda n: f"patient.age >= {n}"), st.integers(0, 10).map(lambda n: f"units > {n}"),
    st.just("diagnoses overlaps {H02.831, M54.*}"), st.just('modifiers contains "50"'),
    st.just("other_codes overlaps {15820-15823}"), st.just('provider.network == "in"'),
    st.just('plan == "a"'), st.just('patient.sex == "female"'), st.just('stage in {"trial"}'),
    dates.map(lambda d: f"date_of_service >= {d}"),
    st.integers(0, 400).map(lambda d: f"date_of_service + {d} days >= 2024-01-01"),
    st.sampled_from(["place_of_service", "patient.age", "diagnoses", "plan"]).map(lambda f: f"known({f})"),
    st.sampled_from(["true", "false"]))
random_atoms = st.builds(lambda f, o, v: f"{f} {o} {v}",
                         st.sampled_from(["place_of_service", "patient.age", "diagnoses", "code", "nonsense", "patient"]),
                         st.sampled_from(["==", "<", "in", "not in", "overlaps", "contains"]),
                         st.sampled_from(['"22"', "18", "2024-01-01", "true", "{}", "some_set", "{15820-15823}", "(("]))
conditions = st.recursive(mostly(typed_atoms, random_atoms), lambda inner: st.one_of(
    st.builds(lambda a, op, b: f"{a} {op} {b}", inner, st.sampled_from(["and", "or"]), inner),
    inner.map(lambda c: f"not ({c})"), inner.map(lambda c: f"({c})")), max_leaves=6)
doc_ids = mostly(st.sampled_from(["photos", "notes"]), st.just("missing"))
rules = st.fixed_dictionaries(
    {"when": mostly(conditions), "pa_needed": mostly(st.sampled_from(PA[:2]), st.sampled_from(PA[2:]))},
    optional={"covered": mostly(st.sampled_from(COVERED[:2]), st.just(COVERED[2])), "reason": st.text(min_size=1, max_size=30),
              "documentation": st.lists(doc_ids, max_size=3, unique=True), "id": st.from_regex(r"\A[a-z]{1,6}\Z")})
documentation = st.fixed_dictionaries({name: st.fixed_dictionaries(
    {"text": st.just(name.title()), "kind": mostly(st.sampled_from(["clinical", "admin", "patient"]), st.just("bogus"))})
    for name in ("photos", "notes")})
policies = st.fixed_dictionaries(
    {"id": mostly(st.sampled_from(["p-one", "p-two", "p-three"]), st.just("Bad Id")), "title": st.text(min_size=1, max_size=20),
     "payer": mostly(st.just("acme"), st.sampled_from(["medicare", ""])), "effective": dates,
     "source": st.fixed_dictionaries({"url": mostly(st.just("https://example.org/p"), st.just("not a url"))}),
     "codes": st.lists(code_items, min_size=1, max_size=5), "rules": st.lists(rules, min_size=1, max_size=4),
     "value_sets": st.fixed_dictionaries({"some_set": st.lists(st.sampled_from(["22", "11", "24"]), min_size=1, max_size=3, unique=True)}),
     "documentation": documentation, "plans": mostly(st.lists(st.sampled_from(["a", "b"]), min_size=1, max_size=2, unique=True))},
    optional={"version": st.sampled_from(["1", "2"]), "end": dates, "hit_policy": mostly(st.just("first"), st.just("collect"))})
policy_files = st.lists(mostly(policies, st.one_of(policies.map(lambda p: {**p, "unknown_key": 1}),
                                                    policies.map(lambda p: {**p, "extends": "p-one"}))), min_size=1, max_size=3,
                        unique_by=lambda p: p["id"])
lines = st.fixed_dictionaries({"code": mostly(service_codes)},
                              optional={"modifiers": mostly(st.lists(st.sampled_from(["50", "RT", "KX"]), max_size=3)),
                                        "units": mostly(st.integers(0, 5), st.floats(allow_nan=False)),
                                        "stage": st.sampled_from(["trial", "permanent"])})
lines = mostly(lines, st.one_of(junk, st.builds(lambda line, system: {**line, "system": system}, lines,
                                                st.sampled_from(["CPT", "HCPCS", "cpt", "LOINC"])),
                                lines.map(lambda line: {**line, "extra": 1})))
requests = st.fixed_dictionaries(
    {"payer": mostly(st.sampled_from(["acme", "medicare", "alabama-medicaid", "nobody"])),
     "services": mostly(st.lists(lines, min_size=1, max_size=4), st.lists(lines, max_size=0) | junk)},
    optional={"plan": mostly(st.sampled_from(["a", "commercial", "advantage", "original-medicare-ffs"])),
              "date_of_service": mostly(dates), "place_of_service": mostly(st.sampled_from(["11", "19", "22", "24"])),
              "type_of_bill": mostly(st.sampled_from(["13X", "0131"])), "state": mostly(st.sampled_from(["NY", "al"])),
              "patient": mostly(st.fixed_dictionaries({}, optional={
                  "birth_date": mostly(st.dates(dt.date(1920, 1, 1), dt.date(2020, 1, 1)).map(dt.date.isoformat)),
                  "sex": mostly(st.sampled_from(["female", "male"])), "id": junk})),
              "diagnoses": mostly(st.lists(mostly(st.sampled_from(["H02.831", "M54.16", "Z00.00"])), max_size=3)),
              "provider": mostly(st.fixed_dictionaries({}, optional={
                  "npi": mostly(st.just("1234567893")), "network": st.sampled_from(["in", "out"]),
                  "exemptions": mostly(st.lists(st.text(min_size=1, max_size=5), max_size=2))})),
              "authorizations": mostly(st.lists(st.fixed_dictionaries(
                  {"id": mostly(st.just("UTN1")), "start": mostly(dates)},
                  optional={"code": mostly(service_codes), "end": mostly(dates)}), max_size=2)),
              "explain": mostly(st.booleans()), "request_id": junk})
FIXTURE_RULES = engine.load(ROOT / "tests" / "fixtures" / "good")
BUNDLED_RULES = engine.load(ROOT / "rules")


def check_answer(ruleset: engine.RuleSet, request: Any) -> None:
    """``evaluate`` answers in the v1 shape or raises RequestError, and nothing else."""
    try:
        answer = ruleset.evaluate(request, today=dt.date(2024, 3, 14))
    except engine.RequestError as err:
        assert isinstance(err.location, str) and err.message
        event("request refused")
        return
    event("request answered")
    assert answer["ruleset"] == ruleset.digest
    assert len(answer["decisions"]) == len(request["services"])
    for decision, line in zip(answer["decisions"], request["services"], strict=True):
        assert decision["code"] == str(line["code"]).strip().upper()
        assert decision["pa_needed"] in PA and decision["covered"] in (*COVERED, "unknown")
        assert decision["reasons"] and all(isinstance(r, str) and r for r in decision["reasons"])
        assert ("possible" in decision) == ("conditional" in (decision["pa_needed"], decision["covered"]))
        assert decision["info_needed"] or decision["pa_needed"] != "conditional" or len(decision.get("possible", [])) > 1


@FUZZ
@given(documents=policy_files, request=requests)
def test_random_policy_files_load_with_located_problems_or_answer(tmp_path: Path, documents: list[Any],
                                                                   request: Any) -> None:
    folder = Path(tempfile.mkdtemp(dir=tmp_path))
    (folder / "_payer.yaml").write_text("payer: acme\ntitle: Acme\n")
    for number, document in enumerate(documents):
        (folder / f"p{number}.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
    tree = read_tree(folder)
    for problem in tree.problems:
        assert problem.code.startswith("E-") and problem.line >= 1 and problem.column >= 1
        assert Path(problem.path).parent == folder
    try:
        ruleset = engine.load(folder)
    except engine.LoadError as err:
        assert err.problems == sorted(tree.problems)
        event("rule tree refused")
        return
    event("rule tree loaded")
    check_answer(ruleset, request)


@FUZZ
@given(request=requests)
def test_random_v1_requests_raise_only_request_errors(request: Any) -> None:
    check_answer(FIXTURE_RULES, request)
    check_answer(BUNDLED_RULES, request)


@FUZZ
@given(request=st.recursive(junk, lambda inner: st.lists(inner, max_size=3)
                            | st.dictionaries(st.text(max_size=6), inner, max_size=4), max_leaves=10))
def test_any_json_value_raises_only_request_errors(request: Any) -> None:
    try:
        BUNDLED_RULES.evaluate(request)
    except engine.RequestError:
        pass
