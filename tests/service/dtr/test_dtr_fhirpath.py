"""The FHIRPath in the generated forms: which documentation items have an enablement, and the
forms' validity. (Enablement evaluated with fhirpathpy on the CQL variables, agreeing with the
engine: tests/service/dtr/test_dtr_cql_answers.py; pre-population: test_dtr_cql.py.)"""
from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from dtr_helpers import BUNDLED_RULES, assert_constraints, fact_values, order_lines, parses_as_r4
from hypothesis import strategies as st

import engine
from engine.language import ast
from engine.language.logic import walk
from engine.evaluation.needs import needs_of
from service.dtr.catalogue import Catalogue
from service.dtr.facts import ITEM_SPECS, NOT_ASKED, answer_values, askable
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


def answers_response(facts: dict[str, Any]) -> dict[str, Any]:
    """A QuestionnaireResponse answering one item per fact."""
    return {"resourceType": "QuestionnaireResponse", "status": "in-progress", "item": [
        {"linkId": "facts", "item": [{"linkId": name, "answer": answer_values(ITEM_SPECS[name], value)}
                                     for name, value in facts.items()]}]}


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
