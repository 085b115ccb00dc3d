"""The CRD anchor examples and their variants, checked field by field against CRD 2.2."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from crd_calls import (CPT, HCPCS, HCPCS_BLUEBUTTON, POS, TODAY, acme_coverage, assert_ok, assert_outcome,
                       by_code, order_sign, post, repaired_inferno_order_sign, repetitions, service_request,
                       value)


# --- the anchor examples -------------------------------------------------------------------

def test_ig_order_sign_is_refused_for_a_payer_named_by_display_only(client, anchor) -> None:
    issue = assert_outcome(post(client, anchor("CRDServiceRequest.json")), 400, "prefetch.coverage")
    assert "Coverage/COV1: the payor carries no identifier" in issue["diagnostics"]


def test_ig_order_sign_two_service_requests(client, ig_order_sign, crd) -> None:
    request = ig_order_sign()
    body = assert_ok(post(client, request), crd)
    sent = {e["resource"]["id"]: e["resource"] for e in request["context"]["draftOrders"]["entry"]}
    assert [a["resource"]["id"] for a in body["systemActions"]] == ["1357", "2468"]
    for action in body["systemActions"]:  # the update changes nothing but coverage-information
        original = {k: v for k, v in sent[action["resource"]["id"]].items() if k != "extension"}
        assert {k: v for k, v in action["resource"].items() if k != "extension"} == original

    mammo = by_code(repetitions(body, "ServiceRequest/1357", crd), crd)
    assert list(mammo) == ["77061", "77062", "77065", "77066"]  # SNOMED code + ext-billing-options
    tomo = mammo["77061"]
    assert value(tomo, "coverage") == [{"reference": "Coverage/COV1"}]
    assert value(tomo, "covered") == ["covered"]
    assert value(tomo, "pa-needed") == ["auth-needed"]
    assert value(tomo, "doc-needed") == ["clinical"]
    assert value(tomo, "doc-purpose") == ["withpa"]
    assert "info-needed" not in tomo
    assert value(tomo, "billingCode") == [{"system": CPT, "code": "77061"}]
    assert value(tomo, "questionnaire") == ["http://example.org/acme/Questionnaire/breast-imaging|1.0",  # authored
                                            "http://testserver/fhir/Questionnaire/acme-breast-imaging|1"]  # generated
    assert value(tomo, "reason") == [{"text": "Acme reviews diagnostic breast tomosynthesis before it is done."}]
    link = tomo["detail"][0]["extension"]
    assert link == [{"url": "category", "valueCode": "cat-other"},
                    {"url": "code", "valueCodeableConcept": {"coding": [
                        {"system": "http://terminology.hl7.org/CodeSystem/crd-coverage-detail",
                         "code": "policy-link", "display": "Policy Link"}]}},
                    {"url": "value", "valueUrl": "https://example.org/acme/policies/breast-imaging"}]
    assert value(tomo, "date") == [TODAY]

    screening = mammo["77065"]  # no Condition in the prefetch: the diagnosis decides
    assert value(screening, "pa-needed") == ["conditional"]
    assert value(screening, "info-needed") == ["OTH"]
    assert any("diagnoses" in r["text"] for r in value(screening, "reason"))

    oxygen = by_code(repetitions(body, "ServiceRequest/2468", crd), crd)["E0431"]
    assert value(oxygen, "billingCode") == [{"system": HCPCS, "code": "E0431"}]
    assert value(oxygen, "pa-needed") == ["conditional"]
    assert value(oxygen, "info-needed") == ["location"]  # the Location has no place-of-service type

    cards = body["cards"]
    assert len(cards) <= 5  # davinci-crd.configuration max-cards
    first = cards[0]
    assert first["summary"] == ("Acme Health Plan: prior authorization needed for "
                                "Contrast enhanced spectral mammography (Procedure)")  # the order's own text
    assert first["source"]["label"] == "Acme Health Plan"
    assert first["extension"] == {"davinci-crd.associated-resource": [{"reference": "ServiceRequest/1357"}]}
    assert first["links"] == [{"label": "Diagnostic breast imaging (test fixture) (version 1)",
                               "url": "https://example.org/acme/policies/breast-imaging", "type": "absolute"},
                              {"label": "Screening and diagnostic mammography (test fixture) (version 2)",
                               "url": "https://example.org/acme/policies/mammography", "type": "absolute"}]
    (second,) = cards[1:]  # one card per order: 1357's open codes are on its first card
    assert second["extension"]["davinci-crd.associated-resource"] == [{"reference": "ServiceRequest/2468"}]
    assert second["summary"].startswith("Acme Health Plan: place of service needed to decide on Portable gaseous")


def test_ig_order_dispatch_with_coverage_info_off_returns_nothing(client, anchor, crd) -> None:
    request = anchor("CRDServiceRequest2.json")
    assert request["extension"]["davinci-crd.configuration"]["coverage-info"] is False
    response = post(client, request)
    assert response.status_code == 200
    assert response.json() == {"cards": [], "systemActions": [],
                               "extension": {"covreq.ruleset": response.headers["x-covreq-ruleset"]}}


def test_ig_order_dispatch_needs_the_dispatched_orders(client, anchor) -> None:
    request = anchor("CRDServiceRequest2.json")
    del request["extension"]["davinci-crd.configuration"]["coverage-info"]
    issue = assert_outcome(post(client, request), 412, "context.dispatchedOrders")
    assert "MedicationRequest/1111" in issue["diagnostics"]


def test_ig_order_dispatch_resolved_from_prefetch(client, anchor, identify, crd) -> None:
    request = identify(anchor("CRDServiceRequest2.json"))
    del request["extension"]["davinci-crd.configuration"]["coverage-info"]
    request["prefetch"]["medicationRequests"] = {"resourceType": "Bundle", "type": "searchset", "entry": [
        {"resource": {"resourceType": "MedicationRequest", "id": i, "status": "draft", "intent": "order",
                      "subject": {"reference": "Patient/pat1234"},
                      "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                                                                "code": "617993"}]}}} for i in ("1111", "2222")]}
    body = assert_ok(post(client, request), crd)
    assert [a["resource"]["id"] for a in body["systemActions"]] == ["1111", "2222"]
    (only,) = repetitions(body, "MedicationRequest/1111", crd)
    subs = crd.subs(only)
    assert value(subs, "covered") == ["conditional"] and value(subs, "info-needed") == ["detail-code"]
    assert "billingCode" not in subs


def test_ig_appointment_book_without_prefetch_or_a_queryable_server_is_a_412(client, anchor) -> None:
    issue = assert_outcome(post(client, anchor("CRDServiceRequest4.json")), 412, "Coverage")
    assert "no Coverage" in issue["diagnostics"]


def test_ig_appointment_book_with_coverage(client, anchor, crd) -> None:
    request = anchor("CRDServiceRequest4.json")
    request["prefetch"] = {"coverage": acme_coverage()}
    body = assert_ok(post(client, request), crd)
    (only,) = repetitions(body, "Appointment/example", crd)  # service-type 24 is no billing code
    assert value(crd.subs(only), "info-needed") == ["detail-code"]


def based_on_eyelid_surgery(anchor, version: str) -> dict:
    """The IG's appointment-book example based on a ServiceRequest for CPT 15823 in the prefetch."""
    request = anchor("CRDServiceRequest4.json")
    appointment = request["context"]["appointments"]["entry"][0]["resource"]
    appointment["basedOn"] = [{"reference": "ServiceRequest/sr-eyelid"}]
    appointment["start"] = "2024-05-02T09:00:00Z"
    request["prefetch"] = {"coverage": acme_coverage(), "serviceRequests": {
        "resourceType": "Bundle", "type": "searchset", "entry": [{"resource": service_request("sr-eyelid", "15823", pos="22")}]}}
    request["extension"] = {"davinci-crd.requestedVersion": version}
    return request


def test_appointment_based_on_a_service_request_updates_the_order_in_crd_2_2(client, anchor, crd) -> None:
    body = assert_ok(post(client, based_on_eyelid_surgery(anchor, "2.2")), crd)
    (action,) = body["systemActions"]
    assert action["resource"]["resourceType"] == "ServiceRequest"  # CRD 2.2 cards.html: "the one exception"
    subs = crd.subs(crd.coverage_information(action)[0])
    assert value(subs, "pa-needed") == ["auth-needed"]


@pytest.mark.parametrize("version", ["2.0", "2.1"])
def test_appointment_based_on_a_service_request_updates_the_appointment_before_crd_2_2(client, anchor, version) -> None:
    body = post(client, based_on_eyelid_surgery(anchor, version)).json()
    (action,) = body["systemActions"]
    assert action["resource"]["resourceType"] == "Appointment" and action["resource"]["id"] == "example"
    (extension,) = action["resource"]["extension"]
    subs = {sub["url"]: sub for sub in extension["extension"]}
    assert subs["pa-needed"]["valueCode"] == "auth-needed"  # answered from the order it is based on
    assert subs["billingCode"]["valueCoding"]["code"] == "15823"


def test_kit_order_dispatch_in_the_older_order_context_is_answered(client, anchor, crd) -> None:
    request = anchor("inferno_order_dispatch_0.json")  # context.order, as CRD 2.0.1 describes the hook
    request["prefetch"]["coverage"] = acme_coverage("cov015")
    body = assert_ok(post(client, request), crd)
    assert [a["resource"]["id"] for a in body["systemActions"]] == ["servreq-g0180-1"]


def test_inferno_order_sign_as_published_gets_200_and_a_card_per_invalid_order(client, anchor, crd) -> None:
    """The kit's order-sign example: its NutritionOrder has no intent and its MedicationRequest's
    doseAndRate is an object. Neither is valid R4: no systemAction for either, and an indeterminate
    card each naming the path that is wrong; the call itself is answered (200)."""
    request = anchor("order_sign_hook_request.json")
    request["prefetch"] = {"coverage": acme_coverage()}
    body = assert_ok(post(client, request), crd)
    assert body["systemActions"] == []
    cards = {card["extension"]["davinci-crd.associated-resource"][0]["reference"]: card for card in body["cards"]}
    assert set(cards) == {"NutritionOrder/pureeddiet-simple", "MedicationRequest/smart-MedicationRequest-103"}
    assert "context.draftOrders.entry[0].resource.intent" in cards["NutritionOrder/pureeddiet-simple"]["detail"]
    assert "context.draftOrders.entry[1].resource.dosageInstruction[0].doseAndRate" in \
        cards["MedicationRequest/smart-MedicationRequest-103"]["detail"]
    assert all("not valid FHIR R4" in card["summary"] for card in cards.values())


def test_one_invalid_order_does_not_cost_the_others_their_answer(client, anchor, crd) -> None:
    request = repaired_inferno_order_sign(anchor("order_sign_hook_request.json"))
    request["prefetch"] = {"coverage": acme_coverage()}
    request["context"]["draftOrders"]["entry"][0]["resource"].pop("intent")
    body = assert_ok(post(client, request), crd)
    assert [a["resource"]["resourceType"] for a in body["systemActions"]] == ["MedicationRequest"]
    (card,) = [c for c in body["cards"] if "not valid FHIR R4" in c["summary"]]
    assert card["extension"]["davinci-crd.associated-resource"] == [{"reference": "NutritionOrder/pureeddiet-simple"}]


def test_a_call_whose_order_bundle_itself_is_unreadable_is_still_a_400(client) -> None:
    request = order_sign(service_request("s1", "15823"))
    request["context"]["draftOrders"]["entry"][0]["fullUrl"] = 7  # not a uri: the Bundle's own element
    assert_outcome(post(client, request), 400, "context.draftOrders.entry[0].fullUrl")


def test_inferno_order_sign_without_coverage_or_a_queryable_server_is_a_412(client, anchor) -> None:
    assert_outcome(post(client, repaired_inferno_order_sign(anchor("order_sign_hook_request.json"))), 412, "Coverage")


def test_inferno_order_sign_with_coverage(client, anchor, crd) -> None:
    request = repaired_inferno_order_sign(anchor("order_sign_hook_request.json"))
    request["prefetch"] = {"coverage": acme_coverage()}
    body = assert_ok(post(client, request), crd)
    nutrition = next(a for a in body["systemActions"] if a["resource"]["resourceType"] == "NutritionOrder")
    kept = [e for e in nutrition["resource"]["extension"] if e["url"] in ("existing_extension", "to_replace")]
    assert len(kept) == 2  # the update touches coverage-information only
    for action in body["systemActions"]:
        (only,) = crd.coverage_information(action)
        assert value(crd.subs(only), "info-needed") == ["detail-code"]


def test_ri_device_request_with_insurance_as_an_object_is_answered_with_a_card(client, anchor, crd) -> None:
    request = anchor("requestWithHydratedPrefetchBundle.json")  # DeviceRequest.insurance is an object
    request["prefetch"]["coverage"] = acme_coverage("1234")  # the payer, identified
    body = assert_ok(post(client, request), crd)
    assert body["systemActions"] == []
    (card,) = body["cards"]
    assert "context.draftOrders.entry[0].resource.insurance" in card["detail"] and "must be a list" in card["detail"]


def test_ri_device_request_hcpcs_with_coverage_and_place(client, anchor, crd) -> None:
    request = anchor("requestWithHydratedPrefetchBundle.json")
    device = request["context"]["draftOrders"]["entry"][0]["resource"]
    device["insurance"] = [device["insurance"]]  # R4 has a list here; the RI sends one object
    request["context"]["draftOrders"]["type"] = "collection"  # required in R4; the RI leaves it out
    request["prefetch"]["coverage"] = acme_coverage("1234")
    request["prefetch"]["encounter"] = {"resourceType": "Encounter", "id": "89284", "status": "planned",
                                        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                                                  "code": "HH"},
                                        "location": [{"location": {"reference": "Location/home"}}]}
    request["prefetch"]["locations"] = {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": {
        "resourceType": "Location", "id": "home", "type": [{"coding": [{"system": POS, "code": "12"}]}]}}]}
    body = assert_ok(post(client, request), crd)
    subs = by_code(repetitions(body, "DeviceRequest/24439", crd), crd)["E0424"]
    assert value(subs, "pa-needed") == ["auth-needed"] and value(subs, "doc-needed") == ["clinical"]
    assert body["cards"][0]["summary"] == ("Acme Health Plan: prior authorization needed for "
                                           "Stationary Compressed Gaseous Oxygen System, Rental")


# --- variants ------------------------------------------------------------------------------

def test_missing_prefetch_without_a_fhir_server_is_a_412_operation_outcome(client, anchor) -> None:
    request = anchor("CRDServiceRequest.json")
    del request["prefetch"]
    assert_outcome(post(client, request), 412, "Coverage")


@pytest.mark.parametrize(("payer", "payer_id", "says"), [
    ("Unknown Health", "UNKNOWN-9", "payer 'Unknown Health' (http://example.org/payer-ids|UNKNOWN-9) "
                                    "is not served by this service"),
    ("Orphan Health", "ORPHAN-01", "maps to covreq payer 'orphan', for which the rule set holds no rules"),
])
def test_a_payer_this_service_does_not_serve_is_a_400_not_a_denial(client, crd, payer, payer_id, says) -> None:
    request = order_sign(service_request("s1", "15823"),
                         prefetch={"coverage": acme_coverage(payer=payer, payer_id=payer_id)})
    issue = assert_outcome(post(client, request), 400, "prefetch.coverage")
    assert says in issue["diagnostics"]


def test_inactive_coverage_is_not_covered_no_active_coverage(client, crd) -> None:
    body = assert_ok(post(client, order_sign(service_request("s1", "15823"),
                                             prefetch={"coverage": acme_coverage(status="cancelled")})), crd)
    (only,) = crd.coverage_information(body["systemActions"][0])
    assert value(crd.subs(only), "reason")[0]["coding"][0]["code"] == "no-active-coverage"


@pytest.mark.parametrize(("pos", "pa"), [("11", "no-auth"), ("22", "auth-needed")])
def test_cpt_on_a_service_request(client, crd, pos: str, pa: str) -> None:
    body = assert_ok(post(client, order_sign(service_request("s1", "15823", pos=pos))), crd)
    subs = by_code(repetitions(body, "ServiceRequest/s1", crd), crd)["15823"]
    assert value(subs, "pa-needed") == [pa]
    assert value(subs, "billingCode") == [{"system": CPT, "code": "15823"}]
    if pa == "auth-needed":
        assert value(subs, "doc-needed") == ["clinical", "patient"]
        assert value(subs, "doc-purpose") == ["withpa"]
        assert len(body["cards"]) == 1
    else:
        assert "doc-needed" not in subs and body["cards"] == []


def test_hcpcs_on_a_device_request_with_the_bluebutton_uri(client, crd) -> None:
    device = {"resourceType": "DeviceRequest", "id": "d1", "status": "draft", "intent": "order",
              "subject": {"reference": "Patient/p1"},
              "codeCodeableConcept": {"coding": [{"system": HCPCS_BLUEBUTTON, "code": "E0250"}]}}
    body = assert_ok(post(client, order_sign(device)), crd)
    subs = by_code(repetitions(body, "DeviceRequest/d1", crd), crd)["E0250"]
    assert value(subs, "covered") == ["not-covered"] and "pa-needed" not in subs  # q2
    assert value(subs, "billingCode") == [{"system": HCPCS_BLUEBUTTON, "code": "E0250"}]
    assert value(subs, "reason") == [{"text": "Acme plans exclude hospital beds for home use."}]


def test_diagnoses_from_conditions_decide(client, crd) -> None:
    conditions = {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": {
        "resourceType": "Condition", "id": "c1", "subject": {"reference": "Patient/p1"}, "code": {"coding": [
            {"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "C50.911"}]}}}]}
    body = assert_ok(post(client, order_sign(service_request("s1", "77065"), prefetch={
        "coverage": acme_coverage(), "conditions": conditions})), crd)
    subs = by_code(repetitions(body, "ServiceRequest/s1", crd), crd)["77065"]
    assert value(subs, "pa-needed") == ["no-auth"] and "info-needed" not in subs


def test_order_select_answers_selected_orders_without_clinical_documents(client, crd) -> None:
    request = order_sign(service_request("s1", "15823", pos="22"), service_request("s2", "77061"))
    request["hook"] = "order-select"
    request["context"]["selections"] = ["ServiceRequest/s1"]
    body = assert_ok(post(client, request), crd)
    (action,) = body["systemActions"]
    subs = crd.subs(crd.coverage_information(action)[0])
    assert value(subs, "doc-needed") == ["patient"]  # a supporting hook asks no clinical/admin documents


def test_max_cards_is_honoured(client, ig_order_sign, crd) -> None:
    request = ig_order_sign()
    request["extension"]["davinci-crd.configuration"]["max-cards"] = 1
    body = assert_ok(post(client, request), crd)
    assert len(body["cards"]) == 1 and "prior authorization needed" in body["cards"][0]["summary"]


# --- errors --------------------------------------------------------------------------------

@pytest.mark.parametrize(("mutate", "status", "expression"), [
    (lambda r: r.update(hook="order-select"), 400, "hook"),
    (lambda r: r.pop("hookInstance"), 400, "hookInstance"),
    (lambda r: r.pop("context"), 400, "context"),
    (lambda r: r["context"].update(draftOrders=[]), 400, "context.draftOrders"),
    (lambda r: r["context"].update(draftOrders={"resourceType": "Patient"}), 400, "context.draftOrders"),
    (lambda r: r.update(prefetch=[]), 400, "prefetch"),
    (lambda r: r["extension"]["davinci-crd.configuration"].update({"max-cards": "five"}), 400,
     "extension.davinci-crd.configuration.max-cards"),
    (lambda r: r["extension"]["davinci-crd.configuration"].update({"coverage-info": "no"}), 400,
     "extension.davinci-crd.configuration.coverage-info"),
    (lambda r: r["extension"].update({"davinci-crd.requestedVersion": "1.0"}), 400,
     "extension.davinci-crd.requestedVersion"),
])
def test_bad_hook_requests_are_operation_outcomes(client, anchor, mutate, status, expression) -> None:
    request = anchor("CRDServiceRequest.json")
    mutate(request)
    assert_outcome(client.post("/cds-services/order-sign-crd", json=request), status, expression)


def test_malformed_json_unknown_service_and_oversized_bodies(client) -> None:
    assert_outcome(client.post("/cds-services/order-sign-crd", content=b'{"hook": '), 400)
    assert_outcome(client.post("/cds-services/order-sign-crd", content=b'[1, 2]'), 400, "request")
    assert_outcome(client.post("/cds-services/no-such-crd", json={}), 404)
    assert_outcome(client.post("/cds-services/order-sign-crd", content=b" " * 2_000_000), 413)


def test_every_crd_example_the_tests_read_is_in_the_repository_with_its_source(anchor) -> None:
    folder = Path(__file__).resolve().parents[1] / "fixtures" / "crd"
    sources = (folder / "SOURCES.md").read_text(encoding="utf-8")
    examples = sorted(folder.glob("*.json"))
    assert len(examples) == 14
    for path in examples:
        assert f"| `{path.name}` |" in sources, path.name
        assert anchor(path.name) == json.loads(path.read_text(encoding="utf-8"))  # the tests read these
