"""The coverage-information updates an EHR applies: none when nothing is new (resp-29, resp-35),
stable ids, and never a lost extension that covreq did not write (resp-37, resp-46)."""
from __future__ import annotations

import copy

from crd_calls import HCPCS, acme_coverage, assert_ok, order_sign, post, service_request, value

COVERAGE_INFORMATION = "http://hl7.org/fhir/us/davinci-crd/StructureDefinition/ext-coverage-information"


def ids(body: dict, crd) -> dict[str, str]:
    """The coverage-assertion-id of each updated order."""
    return {a["resource"]["id"]: value(crd.subs(crd.coverage_information(a)[0]), "coverage-assertion-id")[0]
            for a in body.get("systemActions", [])}


def test_resending_an_order_that_carries_covreqs_answer_yields_no_new_action(client, crd) -> None:
    orders = [service_request("s1", "15823", pos="22"), service_request("s2", "77061")]
    first = assert_ok(post(client, order_sign(*orders)), crd)
    assert [a["resource"]["id"] for a in first["systemActions"]] == ["s1", "s2"]
    applied = [action["resource"] for action in first["systemActions"]]  # what the EHR now holds
    again = assert_ok(post(client, order_sign(*applied)), crd)
    assert again["systemActions"] == []


def test_only_the_order_whose_answer_changed_gets_an_action(client, crd) -> None:
    first = assert_ok(post(client, order_sign(service_request("s1", "15823", pos="22"),
                                              service_request("s2", "15823", pos="22"))), crd)
    applied = [copy.deepcopy(action["resource"]) for action in first["systemActions"]]
    applied[1]["locationCode"][0]["coding"][0]["code"] = "11"  # s2 moved to the office
    again = assert_ok(post(client, order_sign(*applied)), crd)
    (action,) = again["systemActions"]
    assert action["resource"]["id"] == "s2"
    (extension,) = crd.coverage_information(action)  # the stale answer replaced, not added to
    assert value(crd.subs(extension), "pa-needed") == ["no-auth"]


def test_the_assertion_id_is_stable_across_calls_and_shared_by_an_orders_repetitions(client, crd) -> None:
    order = service_request("s1", "77061")
    order["code"]["coding"].append({"system": "http://www.ama-assn.org/go/cpt", "code": "77062"})
    first = assert_ok(post(client, order_sign(order)), crd)
    other_call = order_sign(order)
    other_call["hookInstance"] = "another-invocation"
    second = assert_ok(post(client, other_call), crd)
    assert ids(first, crd) == ids(second, crd)
    (action,) = first["systemActions"]
    assert len({value(crd.subs(e), "coverage-assertion-id")[0] for e in crd.coverage_information(action)}) == 1
    changed = assert_ok(post(client, order_sign(order, prefetch={"coverage": acme_coverage("COV2")})), crd)
    assert ids(changed, crd) != ids(first, crd)  # another Coverage, another assertion


def test_an_update_keeps_other_payers_coverage_information_and_every_other_extension(client, crd) -> None:
    theirs = {"url": COVERAGE_INFORMATION, "extension": [
        {"url": "coverage", "valueReference": {"reference": "Coverage/other-payer"}},
        {"url": "covered", "valueCode": "covered"}, {"url": "date", "valueDate": "2026-01-02"},
        {"url": "coverage-assertion-id", "valueString": "theirs-1"}]}
    note = {"url": "http://example.org/ehr/order-note", "valueString": "bring films"}
    stale_ours = {"url": COVERAGE_INFORMATION, "extension": [
        {"url": "coverage", "valueReference": {"reference": "http://ehr.example/fhir/Coverage/COV1"}},
        {"url": "covered", "valueCode": "covered"}, {"url": "date", "valueDate": "2025-01-02"},
        {"url": "coverage-assertion-id", "valueString": "old"}]}
    order = service_request("s1", "15823", pos="22")
    order["extension"] = [theirs, note, stale_ours]
    (action,) = assert_ok(post(client, order_sign(order)), crd)["systemActions"]
    extensions = action["resource"]["extension"]
    assert extensions[:2] == [theirs, note]
    assert [value(crd.subs(e), "coverage") for e in extensions[2:]] == [[{"reference": "Coverage/COV1"}]]
    assert {k: v for k, v in action["resource"].items() if k != "extension"} == \
        {k: v for k, v in order.items() if k != "extension"}


def test_the_assertion_id_is_unique_per_ehr_and_patient_and_the_same_when_a_call_is_repeated(client, crd) -> None:
    """Regression (issue 22, item 6): the id hashed local ids and the answer only, so another
    patient, or an order with the same local ids on another EHR, got the same trace number."""
    def call(server: str, patient: str, hook: str = "order-sign") -> dict:
        request = order_sign(service_request("s1", "E0250", system=HCPCS), fhirServer=server)
        request["hook"], request["context"]["patientId"] = hook, patient
        if hook == "order-select":
            request["context"]["selections"] = ["ServiceRequest/s1"]
        return ids(assert_ok(post(client, request), crd), crd)
    first = call("https://ehr-a.example/fhir", "p1")
    assert call("https://ehr-a.example/fhir/", "p1") == first  # the same call again: the same id
    assert call("https://ehr-a.example/fhir", "p1", "order-select") == first  # the order, not the hook
    assert call("https://ehr-b.example/fhir", "p1") != first  # the same local ids on another EHR
    assert call("https://ehr-a.example/fhir", "p2") != first  # another patient


def order_select(*orders: dict) -> dict:
    """An order-select call selecting every one of ``orders``."""
    request = order_sign(*orders)
    request["hook"], request["context"]["selections"] = "order-select", [f"ServiceRequest/{o['id']}" for o in orders]
    return request


def doc_needed(body: dict, crd) -> list[str]:
    (action,) = body["systemActions"]
    return [code for e in crd.coverage_information(action) for code in value(crd.subs(e), "doc-needed")]


def test_an_order_select_after_an_order_sign_keeps_the_richer_answer(client, crd) -> None:
    """Regression (issue 22, item 5): order-select, a supporting hook, asks for no clinical or admin
    documents (CRD hook-19). Sent after order-sign for an order that carried order-sign's answer, it
    replaced that answer, and the card, with its poorer one."""
    signed = assert_ok(post(client, order_sign(service_request("s1", "15823", pos="22"))), crd)
    assert doc_needed(signed, crd) == ["clinical", "patient"]
    applied = signed["systemActions"][0]["resource"]
    selected = assert_ok(post(client, order_select(applied)), crd)
    assert selected["systemActions"] == []  # the order keeps order-sign's answer
    (card,) = selected["cards"]
    assert "Photographs showing the eyelid position" in card["detail"]  # and the card still says so


def test_an_order_sign_after_an_order_select_and_a_changed_order_replace_the_answer(client, crd) -> None:
    selected = assert_ok(post(client, order_select(service_request("s1", "15823", pos="22"))), crd)
    assert doc_needed(selected, crd) == ["patient"]
    applied = copy.deepcopy(selected["systemActions"][0]["resource"])
    assert doc_needed(assert_ok(post(client, order_sign(applied)), crd), crd) == ["clinical", "patient"]
    signed = assert_ok(post(client, order_sign(service_request("s1", "15823", pos="22"))), crd)
    stale = copy.deepcopy(signed["systemActions"][0]["resource"])
    stale["code"]["coding"][0]["code"] = "15822"  # the order changed since order-sign answered it
    (extension,) = crd.coverage_information(assert_ok(post(client, order_select(stale)), crd)["systemActions"][0])
    assert value(crd.subs(extension), "doc-needed") == ["patient"]  # the stale richer answer is not kept


def test_an_assertion_id_names_the_patient_however_it_is_referenced() -> None:
    """DTR names the patient by the QuestionnaireResponse ``subject`` (relative or absolute), CRD by
    ``Patient/<patientId>``: the same patient is the same id, another one another id."""
    from service.crd.assertions import Assertion
    from service.crd.coverage_information import assertion_id

    def of(patient: str | None, ehr: str = "") -> str:
        return assertion_id("ServiceRequest/s1", "Coverage/c1", "digest", [Assertion("covered", "no-auth")],
                            ehr=ehr, patient=patient)
    assert of("Patient/p1") == of("https://ehr.example/fhir/Patient/p1") != of("Patient/p2")
    assert of(None) != of("Patient/p1") and of("Patient/p1", "https://a.example") != of("Patient/p1")
