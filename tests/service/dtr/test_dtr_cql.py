"""The generated CQL libraries, run as ELM by the CQL reference engine (cql-execution with
cql-exec-fhir): for the same facts, given as FHIR data or as parameters, they answer as the engine
does (prior authorization, coverage, which documentation is owed), and they pre-populate the facts
covreq's own CRD reader reads from the same FHIR data."""
from __future__ import annotations

import datetime as dt
import json
import re
import time
from functools import lru_cache
from typing import Any

from cql_engine import run_elm, translate
from dtr_helpers import CPT, HCPCS, ICD10CM, POS, REPO
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from test_dtr_fhirpath import FORMS, RULES, answered

import engine
from engine.language import ast
from engine.language.codes import CodeSet
from engine.evaluation.evaluate import run_policy
from engine.language.facts import FACTS
from engine.language.logic import analyse, walk
from engine.policy import Policy
from engine.evaluation.needs import needs_of
from engine.evaluation.request import parse_request
from service.dtr import cql
from service.dtr.facts import v1_body
from service.dtr.library import build_library
from service.dtr.questionnaire import Form

#: Facts the libraries read from FHIR data (when no parameter gives them).
FROM_RECORD = ("patient.birth_date", "patient.sex", "state", "place_of_service", "diagnoses", "code",
               "date_of_service")
BUILT = {f"{p.id}|{p.version}": build_library(FORMS.base, p, "id") for p in RULES.policy_versions()}
LIBRARIES = {key: library.elm for key, library in BUILT.items()}


#: An order of the same patient that the form is not filled for, first in the record: the
#: libraries read only the order the DTR client passes (``service_request``), never this one.
OTHER_ORDER = {"resourceType": "ServiceRequest", "id": "sr-other", "status": "active", "intent": "order",
               "subject": {"reference": "Patient/pat-1"}, "occurrenceDateTime": "1999-01-01",
               "code": {"coding": [{"system": CPT, "code": "99999"}]},
               "locationCode": [{"coding": [{"system": POS, "code": "99"}]}],
               "reasonCode": [{"coding": [{"system": ICD10CM, "code": "Z99.89"}]}]}


def record(facts: dict[str, Any], in_record: set[str], period: bool,
           parameters: dict[str, Any] | None = None) -> dict[str, Any]:
    """The bundle and parameters of a library run: a FHIR Bundle with the Patient, another order,
    the order (a ServiceRequest) and Conditions stating the facts of ``in_record``; the order is
    passed as ``service_request``, as the DTR client passes the order it was launched for."""
    patient: dict[str, Any] = {"resourceType": "Patient", "id": "pat-1"}
    order: dict[str, Any] = {"resourceType": "ServiceRequest", "id": "sr-1", "status": "draft", "intent": "order",
                             "subject": {"reference": "Patient/pat-1"}}
    entries: list[dict[str, Any]] = []
    given = {name: value for name, value in facts.items() if name in in_record}
    if "patient.birth_date" in given:
        patient["birthDate"] = given["patient.birth_date"]
    if "patient.sex" in given:
        patient["gender"] = given["patient.sex"]
    if "state" in given:
        patient["address"] = [{"use": "old", "state": "ZZ"}, {"use": "home", "state": given["state"]}]
    if "place_of_service" in given:
        order["locationCode"] = [{"coding": [{"system": POS, "code": given["place_of_service"]}]}]
    if "code" in given:
        code = given["code"]
        order["code"] = {"coding": [{"system": CPT if code[0].isdigit() else HCPCS, "code": code}]}
    if "date_of_service" in given:
        order["occurrencePeriod" if period else "occurrenceDateTime"] = (
            {"start": given["date_of_service"]} if period else given["date_of_service"])
    for index, code in enumerate(given.get("diagnoses", [])):
        coding = {"coding": [{"system": ICD10CM, "code": code}]}
        if index % 2:
            order.setdefault("reasonCode", []).append(coding)
        else:
            entries.append({"resource": {"resourceType": "Condition", "id": f"c-{index}", "code": coding,
                                         "subject": {"reference": "Patient/pat-1"}}})
    bundle = {"resourceType": "Bundle", "type": "collection",
              "entry": [{"resource": patient}, {"resource": OTHER_ORDER}, {"resource": order}, *entries]}
    return {"bundle": bundle, "parameters": {**(parameters or {}), cql.SERVICE_REQUEST: order}}


def set_samples(policy: Policy) -> dict[str, tuple[str, ...]]:
    """Per fact tested against a set with wildcards or ranges, codes in and just out of them
    (``H02.83*``: ``H028312``; ``J0585-J0588``: J0585, J0588, J0589), which the values the forms
    offer leave out."""
    found: dict[str, set[str]] = {}
    conditions = [analyse(rule.when, policy.value_sets) for rule in policy.rules]
    for info in conditions:
        for node in walk(info.expr):
            if isinstance(node, (ast.Member, ast.Overlaps)):
                subject = node.item if isinstance(node, ast.Member) else node.many
                members = info.checked.sets[node.set]
                if isinstance(subject, ast.Fact) and isinstance(members, CodeSet):
                    # the request's codes are stated as the order's other codes
                    samples = found.setdefault(subject.name.replace("request_codes", "other_codes"), set())
                    samples |= {prefix + "1" for prefix in members.prefixes}
                    for span in members.ranges:
                        samples |= {f"{span.prefix}{n:0{span.width}d}{span.suffix}" for n in (
                            span.low, span.high, span.high + 1) if len(str(n)) <= span.width}
    return {name: tuple(sorted(samples)) for name, samples in found.items() if samples}


SAMPLES = {(p.id, p.version): set_samples(p) for p in RULES.policy_versions()}


@st.composite
def cases(draw: st.DrawFn) -> tuple[Form, dict[str, Any], dict[str, Any]]:
    """A form, its facts, and a library run stating them: some in FHIR data, the rest as parameters."""
    form, facts = draw(answered())
    for name, samples in SAMPLES[form.policy.id, form.policy.version].items():
        if name not in ("patient.age", "payer") and draw(st.booleans()):
            sample = draw(st.sampled_from(samples))
            facts[name] = sorted({*facts.get(name, []), sample}) if FACTS[name].many else sample
    in_record = {name for name in FROM_RECORD if name in facts and draw(st.booleans())}
    case = {"library": f"{form.policy.id}|{form.policy.version}",
            **record(facts, in_record, draw(st.booleans()), {n: v for n, v in facts.items() if n not in in_record})}
    return form, facts, case


def assert_agrees(form: Form, facts: dict[str, Any], found: dict[str, Any]) -> bool:
    """The library's answer is the engine's for the same facts; False when no request can state them."""
    policy = form.policy
    try:
        line = parse_request(v1_body({"payer": policy.payer, **facts}), policy.effective).lines[0]
    except engine.RequestError:
        return False
    answer = run_policy(policy, line.facts)
    assert found[cql.PA] == answer.pa_needed, (policy.id, facts, found)
    assert found[cql.COVERAGE] == answer.covered, (policy.id, facts, found)
    listed = {ref.id: when for ref, _policy, when in answer.documentation}
    definite = {ref.id for ref, _policy, when in answer.documentation if when is None}
    for doc, _routes in needs_of(policy).documentation:
        owed = found[cql.documentation_define(doc.id)]
        assert (owed is not False) == (doc.id in listed), (policy.id, doc.id, facts, found)
        assert owed is not True or doc.id in definite, (policy.id, doc.id, facts, found)
    return True


# Each example is one node process running a batch of cases; failures name their case, so they are
# not shrunk (shrinking would rerun node hundreds of times).
@settings(max_examples=10, deadline=None, phases=[Phase.explicit, Phase.reuse, Phase.generate],
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(cases(), min_size=30, max_size=50))
def test_the_elm_answers_as_the_engine_does_for_the_same_facts(batch: list[tuple[Form, dict[str, Any], dict[str, Any]]]) -> None:
    used = {case["library"] for _form, _facts, case in batch}
    results = run_elm({key: LIBRARIES[key] for key in used}, [case for _form, _facts, case in batch])
    for (form, facts, _case), found in zip(batch, results):
        assert_agrees(form, facts, found)


def test_every_bundled_library_runs_and_answers_as_the_engine_for_an_order_alone() -> None:
    cases, expected = [], []
    for policy in RULES.policy_versions():
        if not (policy.code_groups and policy.code_groups[0].codes.exact):
            continue
        facts = {"code": sorted(policy.code_groups[0].codes.exact)[0], "date_of_service": policy.effective.isoformat()}
        cases.append({"library": f"{policy.id}|{policy.version}", **record(facts, set(facts), False)})
        expected.append((FORMS.form(policy), facts))
    started = time.perf_counter()
    results = run_elm(LIBRARIES, cases)
    assert time.perf_counter() - started < 60
    assert len(results) == len(cases) > 10
    for (form, facts), found in zip(expected, results):
        assert assert_agrees(form, facts, found)


def test_the_fact_defines_read_what_the_crd_reader_reads() -> None:
    logic = cql.Logic()
    facts = cql.FactDefines(logic, "medicare")
    for name in ("patient.birth_date", "patient.age", "patient.sex", "state", "place_of_service", "diagnoses", "code",
                 "system", "date_of_service", "units", "modifiers", "type_of_bill"):
        facts.ref(name)
    policy = next(iter(RULES.policy_versions()))
    elm = cql.elm_library(policy, logic)
    run = record({"patient.birth_date": "1950-02-29"[:8] + "03", "patient.sex": "female", "state": "ca",
                  "place_of_service": "22", "diagnoses": ["H02.831", "m54.50"], "code": "15823",
                  "date_of_service": "2024-03-14"}, set(FROM_RECORD), False, {"type_of_bill": "0131"})
    (found,) = run_elm({"x": elm}, [{"library": "x", **run}])
    assert found["Patient birth date"] == "1950-02-03" and found["Patient age"] == 74
    assert found["Patient sex"] == "female" and found["State"] == "CA" and found["Place of service"] == "22"
    assert sorted(found["Diagnoses"]) == ["H02831", "M5450"]
    assert found["Code"] == "15823" and found["System"] == "CPT" and found["Date of service"] == "2024-03-14"
    assert found["Units"] == 1 and found["Modifiers"] == [] and found["Type of bill"] == "131"


def test_ages_count_whole_years_as_the_engine_does() -> None:
    logic = cql.Logic()
    cql.FactDefines(logic, "medicare").ref("patient.age")
    elm = cql.elm_library(next(iter(RULES.policy_versions())), logic)
    pairs = [("2000-02-29", "2001-02-28"), ("2000-02-29", "2001-03-01"), ("2000-02-29", "2004-02-29"),
             ("1990-12-31", "2024-12-30"), ("1990-12-31", "2024-12-31"), ("2024-03-14", "2024-03-14")]
    found = run_elm({"x": elm}, [{"library": "x", **record({}, set(), False, {
        "patient.birth_date": birth, "date_of_service": day})} for birth, day in pairs])
    for (birth, day), result in zip(pairs, found):
        born, on = dt.date.fromisoformat(birth), dt.date.fromisoformat(day)
        assert result["Patient age"] == on.year - born.year - ((on.month, on.day) < (born.month, born.day))


def _doc_example(name: str, language: str) -> str:
    doc = (REPO / "docs" / "dtr.md").read_text(encoding="utf-8")
    found = re.search(rf"<!-- example: {name} -->\n```{language}\n(.*?)\n```", doc, re.S)
    assert found, name
    return found.group(1)


def test_the_documented_library_example_is_what_is_generated_and_what_cql_execution_answers() -> None:
    policy = next(p for p in RULES.policy_versions() if p.id == "medicare-opd-blepharoplasty")
    library = build_library(FORMS.base, policy, "id")
    assert _doc_example("cql-rule", "cql") in library.cql
    runs = json.loads(_doc_example("cql-run", "json"))
    facts = {"code": "15823", "date_of_service": "2024-03-14"}
    found = run_elm({"x": library.elm}, [{"library": "x", **record(facts, set(facts), False, run["parameters"])}
                                         for run in runs])
    for run, result in zip(runs, found):
        assert {name: result[name] for name in run["results"]} == run["results"]
        assert assert_agrees(FORMS.form(policy), {**facts, **run["parameters"]}, result)


@lru_cache(maxsize=1)
def translated() -> dict[str, dict[str, Any]]:
    """The generated CQL of every bundled library, translated by the reference translator."""
    return translate({key: library.cql for key, library in BUILT.items()})


def test_the_reference_translator_compiles_every_generated_cql_library_without_errors() -> None:
    found = translated()
    assert found.keys() == BUILT.keys()
    for key, result in found.items():
        assert result["errors"] == [], (key, result["errors"])
        assert result["elm"]["library"]["identifier"]["id"] == BUILT[key].name


@settings(max_examples=4, deadline=None, phases=[Phase.explicit, Phase.reuse, Phase.generate],
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(cases(), min_size=30, max_size=40))
def test_the_translated_cql_answers_as_the_generated_elm(batch: list[tuple[Form, dict[str, Any], dict[str, Any]]]) -> None:
    """The CQL text means what the ELM does: the translator's ELM of it gives every define the
    value the generated ELM gives it, on the same data and parameters."""
    used = {case["library"] for _form, _facts, case in batch}
    ours = run_elm({key: LIBRARIES[key] for key in used}, [case for _form, _facts, case in batch])
    theirs = run_elm({key: translated()[key]["elm"] for key in used}, [case for _form, _facts, case in batch])
    for (_form, facts, case), mine, reference in zip(batch, ours, theirs):
        assert {name: reference.get(name) for name in mine} == mine, (case["library"], facts)


def test_pre_population_reads_the_order_the_form_is_launched_for_not_the_patients_first() -> None:
    """Two orders in the record; the DTR client passes the second (``service_request``, or a
    DeviceRequest as ``device_request``): every fact read from an order is the passed one's, and
    with no order passed none is read from the record's orders."""
    logic = cql.Logic()
    facts = cql.FactDefines(logic, "medicare")
    for name in ("place_of_service", "diagnoses", "code", "date_of_service"):
        facts.ref(name)
    elm = cql.elm_library(next(iter(RULES.policy_versions())), logic)
    launched = {"resourceType": "ServiceRequest", "id": "sr-2", "status": "draft", "intent": "order",
                "subject": {"reference": "Patient/pat-1"}, "occurrenceDateTime": "2024-03-14",
                "code": {"coding": [{"system": CPT, "code": "15823"}]},
                "locationCode": [{"coding": [{"system": POS, "code": "22"}]}],
                "reasonCode": [{"coding": [{"system": ICD10CM, "code": "H02.831"}]}]}
    device = {"resourceType": "DeviceRequest", "id": "dr-1", "status": "draft", "intent": "order",
              "subject": {"reference": "Patient/pat-1"}, "occurrencePeriod": {"start": "2024-04-02"},
              "codeCodeableConcept": {"coding": [{"system": HCPCS, "code": "E0470"}]},
              "reasonCode": [{"coding": [{"system": ICD10CM, "code": "G47.33"}]}]}
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": {"resourceType": "Patient", "id": "pat-1"}}, {"resource": OTHER_ORDER}, {"resource": launched},
        {"resource": device}]}
    found = run_elm({"x": elm}, [{"library": "x", "bundle": bundle, "parameters": parameters} for parameters in (
        {cql.SERVICE_REQUEST: launched}, {cql.DEVICE_REQUEST: device}, {})])
    by_service, by_device, by_none = found
    assert (by_service["Place of service"], by_service["Diagnoses"], by_service["Code"], by_service["Date of service"]) \
        == ("22", ["H02831"], "15823", "2024-03-14")
    assert (by_device["Place of service"], by_device["Diagnoses"], by_device["Code"], by_device["Date of service"]) \
        == (None, ["G4733"], "E0470", "2024-04-02")
    assert by_none["Place of service"] is None and by_none["Diagnoses"] is None and by_none["Code"] is None
