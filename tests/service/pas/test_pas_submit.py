"""PAS $submit and $inquire: the kit's payloads answered with valid response Bundles, adapted copies
decided by the rules (pended with the documentation owed, certified when complete and the policy
allows it, no PA needed in an office), never a denial; errors, duplicates and the audit trail."""
from __future__ import annotations

import datetime as dt
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pas_helpers import adapted, completed_dtr, inquiry, kit, with_resource
from pas_profiles import check_response_bundle, inquiry_bundles, review_actions

from service.dtr.signing import CONTEXT_URL
from service.pas.evidence import DOCUMENTATION_SYSTEM

SUBMIT, INQUIRE = "/fhir/Claim/$submit", "/fhir/Claim/$inquire"
SIX_DOCUMENTS = {"subjective-complaints", "excess-lid-skin", "visual-field-notes", "functional-impairment",
                 "preop-photos", "visual-field-studies"}
AUTH = "http://hl7.org/fhir/us/davinci-pas/StructureDefinition/extension-reviewAction"


def submitted(client: TestClient, bundle: dict[str, Any], version: str = "2.0.1") -> dict[str, Any]:
    """POST $submit, check the answer is a valid response Bundle of ``version``; its ClaimResponse."""
    reply = client.post(SUBMIT, json=bundle)
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"].startswith("application/fhir+json")
    return check_response_bundle(reply.json(), version, claim=bundle["entry"][0]["resource"])


def notes(response: dict[str, Any]) -> str:
    return " ".join(n["text"] for n in response.get("processNote", []))


def authorization_of(response: dict[str, Any]) -> tuple[str | None, dict[str, str] | None]:
    """The first item's authorization number and its itemPreAuthPeriod."""
    item = response["item"][0]
    number = next((s["valueString"] for a in item["adjudication"] for e in a["extension"] if e["url"] == AUTH
                   for s in e["extension"] if s["url"] == "number"), None)
    period = next((e["valuePeriod"] for e in item["extension"] if e["url"].endswith("extension-itemPreAuthPeriod")), None)
    return number, period


@pytest.mark.parametrize("payload", ["kit-preset-approval_pa_submit_request_payload.json",
                                     "kit-preset-pended_pa_submit_request_payload.json",
                                     "kit-preset-denial_pa_submit_request_payload.json"])
def test_the_kits_submit_payloads_get_valid_response_bundles_pended_for_a_reviewer(pas_client: TestClient,
                                                                                   payload: str) -> None:
    response = submitted(pas_client, kit(payload))
    # X12 service type codes and an insurer known only by NPI: no rule decides them, and covreq never denies
    assert review_actions(response) == ["A4"]
    assert "payer covreq holds rules for" in notes(response) or "no CPT or HCPCS code" in notes(response)


def test_the_kits_inquiry_finds_the_submitted_request_with_its_decision(pas_client: TestClient) -> None:
    submitted(pas_client, kit("kit-preset-approval_pa_submit_request_payload.json"))
    reply = pas_client.post(INQUIRE, json=kit("kit-preset-pa_inquire_request_payload.json"))
    assert reply.status_code == 200, reply.text
    (bundle,) = inquiry_bundles(reply.json(), "2.0.1")
    assert review_actions(check_response_bundle(bundle, "2.0.1", inquiry=True)) == ["A4"]


def test_the_kits_nonconformant_bundle_is_refused_with_an_operation_outcome_naming_the_entries(
        pas_client: TestClient) -> None:
    reply = pas_client.post(SUBMIT, json=kit("kit-nonconformant_pas_bundle.json"))
    assert reply.status_code == 400
    outcome = reply.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["expression"] == ["Bundle.entry"]
    assert "Claim first" in outcome["issue"][0]["diagnostics"]


@pytest.mark.parametrize(("change", "expression"), [
    (lambda b: b.update(type="batch"), "Bundle.type"),
    (lambda b: b.pop("identifier"), "Bundle.identifier"),
    (lambda b: b["entry"].reverse(), "Bundle.entry[0].resource"),
    (lambda b: b["entry"][0]["resource"].update(use="claim"), "Bundle.entry[0].resource.use"),
    (lambda b: b["entry"][0]["resource"].update(insurer={"reference": "Organization/elsewhere"}),
     "Bundle.entry[0].resource.insurer"),
    (lambda b: b["entry"][0]["resource"]["item"][0].update(servicedDate="2024-02-30"), None),
])
def test_a_request_that_is_no_pas_request_bundle_gets_a_400_naming_the_element(pas_client: TestClient, change: Any,
                                                                              expression: str | None) -> None:
    bundle = adapted()
    change(bundle)
    reply = pas_client.post(SUBMIT, json=bundle)
    assert reply.status_code == 400, reply.text
    issue = reply.json()["issue"][0]
    assert issue["severity"] == "error" and issue["diagnostics"]
    if expression:
        assert issue["expression"] == [expression]


def test_blepharoplasty_in_a_hospital_outpatient_department_without_documentation_is_pended_with_six_owed(
        pas_client: TestClient) -> None:
    response = submitted(pas_client, adapted(pos="22"))
    assert review_actions(response) == ["A4"]
    text = notes(response)
    assert all(f"[{doc}]" in text for doc in SIX_DOCUMENTS)
    assert "cms.gov" in text  # the policy link
    assert authorization_of(response) == (None, None) and "preAuthRef" not in response


SOON = (dt.date.today() + dt.timedelta(days=14)).isoformat()  # a date of service an authorization issued today covers


def test_blepharoplasty_with_a_completed_dtr_response_is_certified_for_120_days_when_the_policy_allows(
        affirming_client: TestClient) -> None:
    bundle = with_resource(adapted(pos="22", day=SOON), completed_dtr(affirming_client, day=SOON))
    response = submitted(affirming_client, bundle)
    assert review_actions(response) == ["A1"]
    number, period = authorization_of(response)
    today = dt.date.today()
    assert number and response["preAuthRef"] == number
    assert period == {"start": today.isoformat(), "end": (today + dt.timedelta(days=119)).isoformat()}


def test_a_complete_request_for_a_past_date_of_service_is_pended_as_no_authorization_is_retroactive(
        affirming_client: TestClient) -> None:
    response = submitted(affirming_client, with_resource(adapted(pos="22"), completed_dtr(affirming_client)))
    assert review_actions(response) == ["A4"]
    assert "none is retroactive" in notes(response)


def test_a_complete_request_is_still_pended_when_the_policy_does_not_allow_automatic_affirmation(
        pas_client: TestClient) -> None:
    response = submitted(pas_client, with_resource(adapted(pos="22", day=SOON), completed_dtr(pas_client, day=SOON)))
    assert review_actions(response) == ["A4"]
    assert "affirmed by a reviewer" in notes(response)
    assert "Documentation still owed" not in notes(response)


def test_blepharoplasty_in_an_office_needs_no_prior_authorization(pas_client: TestClient) -> None:
    response = submitted(pas_client, adapted(pos="11"))
    assert review_actions(response) == ["NA"]


def test_a_dtr_response_without_covreqs_signature_never_certifies(affirming_client: TestClient) -> None:
    unsigned = completed_dtr(affirming_client, day=SOON)
    unsigned["extension"] = [e for e in unsigned["extension"] if e["url"] != CONTEXT_URL]
    response = submitted(affirming_client, with_resource(adapted(pos="22", day=SOON), unsigned))
    assert review_actions(response) == ["A4"]
    assert "carries no context signed by covreq" in notes(response)


def test_an_altered_dtr_response_never_certifies(affirming_client: TestClient) -> None:
    altered = completed_dtr(affirming_client, day=SOON)
    order = next(g for g in altered["item"] if g["linkId"] == "order")
    day = next(i for i in order["item"] if i["linkId"] == "date_of_service")
    assert day["answer"][0]["valueDate"] == SOON
    day["answer"][0]["valueDate"] = "2024-03-15"
    response = submitted(affirming_client, with_resource(adapted(pos="22", day=SOON), altered))
    assert review_actions(response) == ["A4"]
    assert "is not trusted" in notes(response)


def test_a_dtr_response_for_another_date_than_the_claims_is_pended(affirming_client: TestClient) -> None:
    later = (dt.date.today() + dt.timedelta(days=20)).isoformat()
    bundle = with_resource(adapted(pos="22", day=later), completed_dtr(affirming_client, day=SOON))
    response = submitted(affirming_client, bundle)
    assert review_actions(response) == ["A4"]
    assert "disagrees with the Claim on date_of_service" in notes(response)


def _document(item_id: str) -> dict[str, Any]:
    return {"resourceType": "DocumentReference", "id": f"doc-{item_id}", "status": "current",
            "type": {"coding": [{"system": DOCUMENTATION_SYSTEM, "code": item_id}]},
            "content": [{"attachment": {"contentType": "application/pdf", "url": f"https://ehr.example/{item_id}.pdf"}}]}


def test_document_references_naming_every_owed_item_certify_when_the_policy_allows(
        affirming_client: TestClient) -> None:
    bundle = adapted(pos="22", day=SOON)
    for item_id in sorted(SIX_DOCUMENTS):
        bundle = with_resource(bundle, _document(item_id))
    assert review_actions(submitted(affirming_client, bundle)) == ["A1"]
    missing_one = adapted(pos="22", day=SOON, transaction="T-2", trace="222")
    for item_id in sorted(SIX_DOCUMENTS - {"preop-photos"}):
        missing_one = with_resource(missing_one, _document(item_id))
    response = submitted(affirming_client, missing_one)
    assert review_actions(response) == ["A4"]
    assert "Documentation still owed: Supporting pre-operative photographs (when applicable) [preop-photos]." in notes(response)


def test_a_duplicate_submission_is_answered_as_the_first_and_stored_once(pas_client: TestClient) -> None:
    first = pas_client.post(SUBMIT, json=adapted(pos="22"))
    again = pas_client.post(SUBMIT, json=adapted(pos="22"))
    assert first.status_code == again.status_code == 200
    assert again.json() == first.json()
    other = pas_client.post(SUBMIT, json=adapted(pos="22", transaction="T-other"))
    assert other.json()["entry"][0]["resource"]["id"] != first.json()["entry"][0]["resource"]["id"]
    from service.store.models import pa_request
    with pas_client.app.state.pas_store.database.engine.connect() as connection:  # type: ignore[attr-defined]
        assert connection.execute(pa_request.select()).all().__len__() == 2


def test_pas_2_2_is_answered_in_its_shapes_and_its_inquiry_returns_parameters(pas_client: TestClient) -> None:
    bundle = adapted(pos="22")
    bundle["meta"]["profile"] = ["http://hl7.org/fhir/us/davinci-pas/StructureDefinition/profile-pas-request-bundle|2.2.1"]
    submitted(pas_client, bundle, version="2.2")
    asking = inquiry()
    asking["meta"]["profile"] = [
        "http://hl7.org/fhir/us/davinci-pas/StructureDefinition/profile-pas-inquiry-request-bundle|2.2.1"]
    reply = pas_client.post(INQUIRE, json=asking)
    assert reply.status_code == 200, reply.text
    (found,) = inquiry_bundles(reply.json(), "2.2")
    assert review_actions(check_response_bundle(found, "2.2", inquiry=True)) == ["A4"]
    asking["entry"][0]["resource"]["identifier"][0]["value"] = "unknown"
    assert inquiry_bundles(pas_client.post(INQUIRE, json=asking).json(), "2.2") == []


def test_a_version_not_served_is_refused(pas_client: TestClient) -> None:
    bundle = adapted()
    bundle["meta"]["profile"] = ["http://hl7.org/fhir/us/davinci-pas/StructureDefinition/profile-pas-request-bundle|9.9"]
    reply = pas_client.post(SUBMIT, json=bundle)
    assert reply.status_code == 400 and reply.json()["issue"][0]["expression"] == ["Bundle.meta.profile"]


def test_an_inquiry_about_another_members_request_finds_nothing(pas_client: TestClient) -> None:
    submitted(pas_client, adapted(pos="22"))
    asking = inquiry()
    next(e["resource"] for e in asking["entry"] if e["resource"]["resourceType"] == "Coverage")["subscriberId"] = "X"
    assert pas_client.post(INQUIRE, json=asking).status_code == 404


def test_every_decision_is_audited_without_phi(pas_client: TestClient, tmp_path: Path) -> None:
    bundle = adapted(pos="22")
    submitted(pas_client, bundle)
    pas_client.post(SUBMIT, json=kit("kit-nonconformant_pas_bundle.json"))
    records = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    decided, refused = [r for r in records if r["api"] == "pas"]
    assert decided["decisions"] == [{"code": "15823", "system": "CPT", "pa_needed": "pended", "review_action": "A4",
                                     "authorization": None}]
    assert refused["status"] == 400 and refused["error_location"] == "Bundle.entry"
    text = json.dumps(records)
    for phi in ("12345678901", "SubscriberExample", "2024-03-14", "G89.4"):
        assert phi not in text


def test_the_capability_statement_offers_the_pas_operations(pas_client: TestClient) -> None:
    statement = pas_client.get("/fhir/metadata").json()
    claim = next(r for r in statement["rest"][0]["resource"] if r["type"] == "Claim")
    assert {o["name"] for o in claim["operation"]} == {"submit", "inquire"}


def _as_urns(bundle: dict[str, Any]) -> dict[str, Any]:
    """``bundle`` with every entry named by a urn:uuid fullUrl and every reference written so."""
    text = json.dumps(bundle)
    for entry in bundle["entry"]:
        resource = entry["resource"]
        urn = f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, entry['fullUrl'])}"
        text = text.replace(json.dumps(entry["fullUrl"]), json.dumps(urn))
        text = text.replace(json.dumps(f"{resource['resourceType']}/{resource['id']}"), json.dumps(urn))
    return json.loads(text)  # type: ignore[no-any-return]


def test_a_bundle_naming_its_resources_by_urn_uuid_is_read_and_answered_under_those_names(
        pas_client: TestClient) -> None:
    bundle = _as_urns(adapted(pos="22"))
    assert bundle["entry"][0]["resource"]["patient"]["reference"].startswith("urn:uuid:")
    reply = pas_client.post(SUBMIT, json=bundle)
    assert reply.status_code == 200, reply.text
    response = check_response_bundle(reply.json(), "2.0.1", claim=bundle["entry"][0]["resource"])
    assert review_actions(response) == ["A4"] and all(f"[{doc}]" in notes(response) for doc in SIX_DOCUMENTS)
    assert reply.json()["entry"][0]["fullUrl"] == f"urn:uuid:{response['id']}"
