"""Property over the bundled rules: for random orders, every question a form asks is a fact the
decision waits for or a documentation item of a policy in force, and completing the form with
any answers gives the decision the library gives for those facts."""
from __future__ import annotations

from typing import Any

from dtr_helpers import BUNDLED_RULES, asked, coverage_information, fact_values, form_of, items, order_lines
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import engine
from engine.facts import FACTS
from engine.needs import needs_of
from service.dtr.adaptive import QR_CONTEXT, QR_COVERAGE, Answers, next_question, page
from service.dtr.catalogue import Catalogue, needs_form
from service.dtr.errors import OperationError
from service.dtr.facts import NOT_ASKED, answer_values, askable, v1_body
from service.dtr.questionnaire import DOC_PREFIX

RULES = engine.load(BUNDLED_RULES)
FORMS = Catalogue(RULES, "http://example.org/fhir")
POLICIES = [p for p in RULES.policy_versions() if p.code_groups and p.code_groups[0].codes.exact]
ENVELOPE = {"extension": [{"url": QR_COVERAGE, "valueReference": {"reference": "Coverage/cov-1"}},
                          {"url": QR_CONTEXT, "valueReference": {"reference": "ServiceRequest/sr-1"}}],
            "subject": {"reference": "Patient/pat-1"}}
MOST_STEPS = len(FACTS) + 2


@st.composite
def orders(draw: st.DrawFn) -> dict[str, Any]:
    """An order line of a bundled policy's payer: a code and date it governs, some facts known."""
    policy = draw(st.sampled_from(POLICIES))
    facts: dict[str, Any] = {"payer": policy.payer, "code": draw(st.sampled_from(sorted(policy.code_groups[0].codes.exact))),
                             "date_of_service": policy.effective.isoformat()}
    if policy.plans and draw(st.booleans()):
        facts["plan"] = sorted(policy.plans)[0]
    reads = {read.spec.name: read for read in needs_of(policy).facts}
    for read in reads.values():
        name = askable([read.spec.name])
        if name and name[0] not in NOT_ASKED and name[0] not in facts and draw(st.booleans()):
            facts[name[0]] = draw(fact_values(name[0], read.values if name[0] == read.spec.name else ()))
    facts.update(draw(order_lines(reads)))
    return facts


def library_decision(facts: dict[str, Any]) -> dict[str, Any] | None:
    """What the library answers for the facts, None when no request can state them."""
    try:
        return RULES.evaluate(v1_body(facts))["decisions"][0]  # type: ignore[no-any-return]
    except engine.RequestError:
        return None


def questions_are_owed(response: dict[str, Any], decision: dict[str, Any]) -> None:
    waiting = askable(decision["info_needed"]) if "conditional" in (decision["pa_needed"], decision["covered"]) else []
    documents = {DOC_PREFIX + d["id"] for d in decision["documentation"]}
    for link_id in asked(response):
        assert link_id in waiting or link_id in documents, (link_id, decision)


def answer_all(response: dict[str, Any], draw: st.DrawFn, given: dict[str, Any]) -> dict[str, Any]:
    """The response with every question of its form answered (facts at random, documents attached)."""
    groups: dict[str, list[dict[str, Any]]] = {g["linkId"]: list(g.get("item", [])) for g in response.get("item", [])}
    for group in form_of(response)["item"]:
        for item in group.get("item", []):
            if item.get("readOnly") or any(i["linkId"] == item["linkId"] for i in groups.get(group["linkId"], [])):
                continue
            if item["linkId"].startswith(DOC_PREFIX):
                value = [{"valueAttachment": {"title": "record.pdf"}} if item["type"] == "attachment"
                         else {"valueBoolean": True}]
            else:
                given[item["linkId"]] = draw(fact_values(item["linkId"], ()))
                value = answer_values(FACTS[item["linkId"]], given[item["linkId"]])
            groups.setdefault(group["linkId"], []).append({"linkId": item["linkId"], "answer": value})
    return {**response, "item": [{"linkId": k, "item": v} for k, v in groups.items() if v]}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(orders(), st.data())
def test_forms_ask_only_what_is_owed_and_complete_with_the_library_decision(known: dict[str, Any],
                                                                            data: st.DataObject) -> None:
    decision = library_decision(known)
    assume(decision is not None and needs_form(decision))
    assert decision is not None
    for summary in decision["policies"]:
        form = FORMS.find(summary)
        assert form is not None
        facts = {k: v for k, v in known.items() if k != "payer"}
        response = page(form, Answers(known=facts), decision, ENVELOPE, FORMS.base, RULES.digest)
        given: dict[str, Any] = {}
        for _step in range(MOST_STEPS):
            current = library_decision({**known, **given})
            assert current is not None
            questions_are_owed(response, current)
            if response["status"] == "completed":
                break
            response = answer_all(response, data.draw, given)
            try:
                response = next_question(response, FORMS, RULES)
            except OperationError as err:
                assert err.status == 400 and library_decision({**known, **given}) is None
                return
        assert response["status"] == "completed"
        expected = library_decision({**known, **given})
        assert expected is not None
        info = coverage_information(response)
        assert info["covered"] == [expected["covered"]]
        assert info.get("pa-needed", [None]) == [None if expected["covered"] == "not-covered" else expected["pa_needed"]]
        owed = [i["linkId"] for i in items(form_of(response), "documentation")]
        assert owed == [DOC_PREFIX + d["id"] for d in expected["documentation"]]
