"""Property over the bundled rules: for random orders (as facts, and as FHIR ServiceRequests through
$questionnaire-package), every question a form asks is a fact the decision waits for or a
documentation item of a policy in force, and completing the form with any answers gives the
decision the library gives for those facts; with anything the server signed changed (an order
answer, the form, the Coverage, the order, the patient, the signature), the response is refused
(422), never answered."""
from __future__ import annotations

from typing import Any, Callable

import pytest
from dtr_helpers import (BUNDLED_RULES, TAMPERINGS, answer_all, bundles, coverage_information, fact_values, form_of,
                         items, order_lines, package_request, questions_are_owed, response_of, service_request,
                         tamper)
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import engine
from engine.language.facts import FACTS
from engine.evaluation.needs import needs_of
from service.dtr.adaptive import Answers, envelope, next_question, page
from service.dtr.catalogue import Catalogue, needs_form
from service.fhir.outcome import FhirError
from service.dtr.facts import NOT_ASKED, askable, flat_facts, v1_body
from service.dtr.questionnaire import DOC_PREFIX
from service.dtr.signing import Keyring
from service.dtr.versions import VERSIONS

RULES = engine.load(BUNDLED_RULES)
FORMS = Catalogue(RULES, "http://example.org/fhir")
KEYS = Keyring.ephemeral()
POLICIES = [p for p in RULES.policy_versions() if p.code_groups and p.code_groups[0].codes.exact]
#: The envelope of a response for Coverage/cov-1 and ServiceRequest/sr-1, in each DTR version's shapes.
ENVELOPES = {v: envelope(v, ["Coverage/cov-1"], ["ServiceRequest/sr-1"], "Patient/pat-1", ["withpa"])
             for v in VERSIONS.values()}
MOST_STEPS = len(FACTS) + 2
CANONICALS = sorted({c for c in (FORMS.canonical({"id": p.id, "version": p.version}) for p in RULES.policy_versions())
                     if c})


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
    """What the library answers for the facts (explained: pending documents say their conditions),
    None when no request can state them."""
    try:
        return RULES.evaluate({**v1_body(facts), "explain": True})["decisions"][0]  # type: ignore[no-any-return]
    except engine.RequestError:
        return None


def complete(response: dict[str, Any], ask: Callable[[dict[str, Any]], dict[str, Any] | None], draw: st.DrawFn,
             facts: dict[str, Any]) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """Answer every question and ask for the next page until the form completes, checking at each step
    that it asks only what is owed; the last response (None when the answers were refused, as the
    library refuses them) and the answers given."""
    given: dict[str, Any] = {}
    for _step in range(MOST_STEPS):
        current = library_decision({**facts, **given})
        assert current is not None
        questions_are_owed(response, current)
        if response["status"] == "completed":
            return response, given
        asked = ask(answer_all(response, draw, given))
        if asked is None:
            assert library_decision({**facts, **given}) is None
            return None, given
        response = asked
    raise AssertionError("the form did not complete")


def states_the_library_decision(response: dict[str, Any], facts: dict[str, Any]) -> None:
    """The completed response's coverage-information and documentation are the library's decision."""
    expected = library_decision(facts)
    assert expected is not None
    info = coverage_information(response)
    assert info["covered"] == [expected["covered"]]
    assert info.get("pa-needed", [None]) == [None if expected["covered"] == "not-covered" else expected["pa_needed"]]
    owed = [i["linkId"] for i in items(form_of(response), "documentation")]
    assert owed == [DOC_PREFIX + d["id"] for d in expected["documentation"]]


def next_in_library(response: dict[str, Any]) -> dict[str, Any] | None:
    """$next-question called as a library; None when the answers are refused with a 400."""
    try:
        return next_question(response, FORMS, RULES, KEYS)
    except FhirError as err:
        assert err.status == 400
        return None


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
        version = data.draw(st.sampled_from(list(ENVELOPES)))
        start = page(form, Answers(known=facts), decision, ENVELOPES[version], FORMS.base, RULES.digest, KEYS, version)
        done, given = complete(start, next_in_library, data.draw, known)
        if done is not None:
            states_the_library_decision(done, {**known, **given})


MEDICARE = [p for p in POLICIES if p.payer == "medicare"]


@st.composite
def fhir_orders(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, Any]]:
    """A Medicare Part B ServiceRequest for a code a bundled policy governs, on a day it is in force,
    maybe with a place of service and diagnoses; and the v1 request saying the same."""
    policy = draw(st.sampled_from(MEDICARE))
    code = draw(st.sampled_from(sorted(policy.code_groups[0].codes.exact)))
    v1: dict[str, Any] = {"payer": "medicare", "plan": "original-medicare-ffs",
                          "date_of_service": policy.effective.isoformat(), "services": [{"code": code}]}
    pos = draw(st.sampled_from([None, "11", "19", "22", "24"]))
    diagnoses = draw(st.lists(st.sampled_from(["H02.831", "G43.709", "M54.50", "Z00.00"]), max_size=2, unique=True))
    if pos:
        v1["place_of_service"] = pos
    if diagnoses:
        v1["diagnoses"] = diagnoses
    return service_request(code=code, day=v1["date_of_service"], pos=pos, diagnoses=tuple(diagnoses)), v1


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fhir_orders(), st.data())
def test_packages_for_fhir_orders_ask_only_what_is_owed_and_complete_with_the_library_decision(
        module_client: TestClient, case: tuple[dict[str, Any], dict[str, Any]], data: st.DataObject) -> None:
    order, v1 = case
    facts = flat_facts(v1)
    decision = library_decision(facts)
    reply = module_client.post("/fhir/Questionnaire/$questionnaire-package", json=package_request(order))
    assert reply.status_code == 200, reply.text
    found = bundles(reply.json())
    assert decision is not None and bool(found) == needs_form(decision)

    def next_over_http(response: dict[str, Any]) -> dict[str, Any] | None:
        reply = module_client.post("/fhir/Questionnaire/$next-question", json=response)
        if reply.status_code == 400:
            return None
        assert reply.status_code == 200, reply.text
        return reply.json()  # type: ignore[no-any-return]

    for bundle in found:
        done, given = complete(response_of(bundle), next_over_http, data.draw, facts)
        if done is not None:
            states_the_library_decision(done, {**facts, **given})


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(orders(), st.data())
def test_a_response_with_anything_the_server_signed_changed_is_refused(known: dict[str, Any],
                                                                      data: st.DataObject) -> None:
    decision = library_decision(known)
    assume(decision is not None and needs_form(decision))
    assert decision is not None
    form = FORMS.find(data.draw(st.sampled_from(decision["policies"])))
    assert form is not None
    facts = {k: v for k, v in known.items() if k != "payer"}
    version = data.draw(st.sampled_from(list(ENVELOPES)))
    start = page(form, Answers(known=facts), decision, ENVELOPES[version], FORMS.base, RULES.digest, KEYS, version)
    answered = answer_all(start, data.draw, {})
    with pytest.raises(FhirError) as refused:
        next_question(tamper(answered, data.draw, CANONICALS), FORMS, RULES, KEYS)
    assert refused.value.status == 422


@pytest.mark.parametrize("kind", TAMPERINGS)
@settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck))
@given(case=fhir_orders(), data=st.data())
def test_a_package_with_anything_the_server_signed_changed_is_refused_over_http(
        module_client: TestClient, kind: str, case: tuple[dict[str, Any], dict[str, Any]], data: st.DataObject) -> None:
    reply = module_client.post("/fhir/Questionnaire/$questionnaire-package", json=package_request(case[0]))
    found = bundles(reply.json())
    assume(found)
    listed = module_client.get("/fhir/Questionnaire").json()["entry"]
    canonicals = [f"{e['resource']['url']}|{e['resource']['version']}" for e in listed]
    answered = answer_all(response_of(data.draw(st.sampled_from(found))), data.draw, {})
    refused = module_client.post("/fhir/Questionnaire/$next-question",
                                 json=tamper(answered, data.draw, canonicals, kind))
    assert refused.status_code == 422, refused.text
    assert refused.json()["resourceType"] == "OperationOutcome"
