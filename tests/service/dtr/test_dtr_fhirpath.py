"""The FHIRPath in the generated forms, evaluated with fhirpathpy: enablement of documentation
items agrees with the engine. (Pre-population is CQL: tests/service/dtr/test_dtr_cql.py.)"""
from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from dtr_helpers import (BUNDLED_RULES, assert_constraints, fact_values, fhirpath, order_lines, parses_as_r4,
                         variables_of)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import engine
from engine import ast
from engine.evaluate import run_policy
from engine.logic import walk
from engine.needs import needs_of
from engine.request import parse_request
from service.dtr.catalogue import Catalogue
from service.dtr.facts import ITEM_SPECS, NOT_ASKED, answer_values, askable, v1_body
from service.dtr.questionnaire import DOC_PREFIX, Form

RULES = engine.load(BUNDLED_RULES)
FORMS = Catalogue(RULES, "http://example.org/fhir")
POLICIES = [p for p in RULES.policy_versions() if p.code_groups and p.code_groups[0].codes.exact]
ENABLE = "http://hl7.org/fhir/uv/sdc/StructureDefinition/sdc-questionnaire-enableWhenExpression"


def _first_day(policy: Any) -> dt.date:
    """The policy's first date of service outside its pauses (a program may start paused, e.g. WISeR
    before its first covered date): on a paused date no form is offered, as nothing is owed."""
    day = policy.effective
    while (pause := policy.pause_on(day)) is not None and pause.end is not None:
        day = pause.end + dt.timedelta(days=1)
    return day


@st.composite
def answered(draw: st.DrawFn) -> tuple[Form, dict[str, Any]]:
    """A bundled policy version's form and facts (each read fact given or left unknown)."""
    policy = draw(st.sampled_from(POLICIES))
    facts: dict[str, Any] = {"code": sorted(policy.code_groups[0].codes.exact)[0],
                             "date_of_service": _first_day(policy).isoformat()}
    reads = {read.spec.name: read for read in needs_of(policy).facts}
    for name, read in reads.items():
        asked = askable([name])
        if asked and asked[0] not in NOT_ASKED and asked[0] != "date_of_service" and draw(st.booleans()):
            facts[asked[0]] = draw(fact_values(asked[0], read.values if asked[0] == name else ()))
    facts.update(draw(order_lines(reads)))
    return FORMS.form(policy), facts


def _response(facts: dict[str, Any]) -> dict[str, Any]:
    """A QuestionnaireResponse answering one item per fact."""
    return {"resourceType": "QuestionnaireResponse", "status": "in-progress", "item": [
        {"linkId": "facts", "item": [{"linkId": name, "answer": answer_values(ITEM_SPECS[name], value)}
                                     for name, value in facts.items()]}]}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(answered())
def test_documentation_items_are_enabled_exactly_when_the_engine_may_owe_them(case: tuple[Form, dict[str, Any]]) -> None:
    form, facts = case
    try:
        line = parse_request(v1_body({"payer": form.policy.payer, **facts}), form.policy.effective).lines[0]
    except engine.RequestError:
        return  # facts no request can state (e.g. a birth date after the date of service)
    owed = {ref.id for ref, _policy, _when in run_policy(form.policy, line.facts).documentation}
    response = _response(facts)
    variables = variables_of(form.questionnaire, response)
    for group in form.questionnaire["item"]:
        for item in group.get("item", []):
            expressions = [e["valueExpression"]["expression"] for e in item.get("extension", []) if e["url"] == ENABLE]
            if item["linkId"].startswith(DOC_PREFIX) and expressions:
                enabled = fhirpath(response, expressions[0], variables)
                assert enabled == [item["linkId"][len(DOC_PREFIX):] in owed], (item["linkId"], facts)


def _beyond_fhirpath(info: Any) -> bool:
    """Whether a condition uses what docs/dtr.md says has no FHIRPath: a date shift, a fact compared
    with a fact (or looked for in a set of facts), the age tested against a set."""
    for node in walk(info.expr):
        if isinstance(node, ast.Shift) or isinstance(node, ast.Compare) and all(
                isinstance(side, (ast.Fact, ast.Shift)) for side in (node.left, node.right)):
            return True
        if isinstance(node, ast.Member) and getattr(node.item, "name", None) == "patient.age" \
                or isinstance(node, ast.Contains) and not isinstance(node.value, ast.Literal):
            return True
    return False


def test_documentation_items_lack_an_enablement_only_where_their_conditions_have_no_fhirpath() -> None:
    for policy in RULES.policy_versions():
        routes = dict((doc.id, found) for doc, found in needs_of(policy).documentation)
        for group in FORMS.form(policy).questionnaire["item"]:
            for item in group.get("item", []):
                if not item["linkId"].startswith(DOC_PREFIX):
                    continue
                conditions = [c for r in routes[item["linkId"][len(DOC_PREFIX):]]
                              for c in (*r.unless, r.rule, r.own) if c is not None]
                enabled = any(e["url"] == ENABLE for e in item.get("extension", []))
                assert enabled != any(map(_beyond_fhirpath, conditions)), (policy.id, item["linkId"])


@pytest.mark.parametrize("policy", RULES.policy_versions(), ids=lambda p: f"{p.id}|{p.version}")
def test_every_bundled_form_is_valid_r4_and_passes_the_profiles_constraints(policy: Any) -> None:
    form = FORMS.form(policy)
    for resource in (form.questionnaire, *form.value_sets):
        parses_as_r4(resource)
        assert_constraints(resource)
