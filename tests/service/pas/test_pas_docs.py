"""docs/pas.md: every example answers as documented (the pended response, the certified item, the
inquiry, the v1 question answered satisfied afterwards; the reviewer's examples: test_pas_review_docs.py)."""
from __future__ import annotations

import copy
import datetime as dt
import json
import re
from typing import Any

from fastapi.testclient import TestClient
from pas_helpers import REPO
from pas_profiles import check_response_bundle, inquiry_bundles, review_actions

DOC = (REPO / "docs" / "pas.md").read_text(encoding="utf-8")
EXAMPLES = {m["name"]: json.loads(m["body"]) for m in re.finditer(
    r"<!-- example: (?P<name>[\w-]+) -->\n```json\n(?P<body>.*?)\n```", DOC, re.S)}
DOCUMENTS = ["subjective-complaints", "excess-lid-skin", "visual-field-notes", "functional-impairment",
             "preop-photos", "visual-field-studies"]
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_AUTHORIZATION = re.compile(r"^CQ[0-9A-F]{16}$")


def mask(value: Any, keep: str = "2024-03-14") -> Any:
    """Blank what differs between runs as the document does: ids, times, authorization numbers and
    today's dates ("…")."""
    if isinstance(value, list):
        return [mask(v, keep) for v in value]
    if isinstance(value, str):
        return "…" if _AUTHORIZATION.match(value) else value
    if not isinstance(value, dict):
        return value
    masked = {}
    for key, inner in value.items():
        if key in ("id", "created", "timestamp") and value.get("resourceType") in ("ClaimResponse", "Bundle") \
                or key == "fullUrl" and "/ClaimResponse/" in inner \
                or key in ("valueDate", "start", "end") and _DATE.match(str(inner)) and inner != keep:
            masked[key] = "…"
        else:
            masked[key] = mask(inner, keep)
    if str(masked.get("url", "")).endswith("administrationReferenceNumber"):
        masked["valueString"] = "…"
    return masked


def test_the_submit_example_is_pended_exactly_as_documented(pas_client: TestClient) -> None:
    reply = pas_client.post("/fhir/Claim/$submit", json=EXAMPLES["pas-submit-request"])
    assert reply.status_code == 200, reply.text
    check_response_bundle(reply.json(), "2.0.1", claim=EXAMPLES["pas-submit-request"]["entry"][0]["resource"])
    assert mask(reply.json()) == EXAMPLES["pas-submit-pended"]


def _with_documents(bundle: dict[str, Any], day: str) -> dict[str, Any]:
    """The example request for ``day``, with a DocumentReference (as documented) for each item owed."""
    result = copy.deepcopy(bundle)
    claim = result["entry"][0]["resource"]
    claim["item"][0]["servicedDate"] = day
    for number, item_id in enumerate(DOCUMENTS, start=1):
        document = copy.deepcopy(EXAMPLES["pas-document-reference"])
        document["id"] = f"doc-{number}"
        document["type"]["coding"][0]["code"] = item_id
        result["entry"].append({"fullUrl": f"https://provider.example/fhir/DocumentReference/doc-{number}",
                                "resource": document})
        claim.setdefault("supportingInfo", []).append({"sequence": number, "category": {"coding": [{
            "system": "http://hl7.org/fhir/us/davinci-pas/CodeSystem/PASTempCodes", "code": "additionalInformation"}]},
            "valueReference": {"reference": f"DocumentReference/doc-{number}"}})
    return result


def test_the_documented_request_with_its_six_documents_is_certified_as_documented(affirming_client: TestClient) -> None:
    day = (dt.date.today() + dt.timedelta(days=14)).isoformat()
    reply = affirming_client.post("/fhir/Claim/$submit", json=_with_documents(EXAMPLES["pas-submit-request"], day))
    response = check_response_bundle(reply.json(), "2.0.1")
    assert mask(response["item"][0], keep=day) == {**EXAMPLES["pas-certified-item"], "extension": [
        {**EXAMPLES["pas-certified-item"]["extension"][0], "valuePeriod": {"start": day, "end": day}},
        *EXAMPLES["pas-certified-item"]["extension"][1:]]}


def test_the_inquiry_example_finds_the_submitted_request(pas_client: TestClient) -> None:
    submitted = pas_client.post("/fhir/Claim/$submit", json=EXAMPLES["pas-submit-request"]).json()
    reply = pas_client.post("/fhir/Claim/$inquire", json=EXAMPLES["pas-inquire-request"])
    assert reply.status_code == 200, reply.text
    (found,) = inquiry_bundles(reply.json(), "2.0.1")
    response = check_response_bundle(found, "2.0.1", inquiry=True)
    assert response["id"] == submitted["entry"][0]["resource"]["id"] and review_actions(response) == ["A4"]


def test_the_v1_question_after_a_certification_is_answered_satisfied(affirming_client: TestClient) -> None:
    day = (dt.date.today() + dt.timedelta(days=14)).isoformat()
    certified = affirming_client.post("/fhir/Claim/$submit", json=_with_documents(EXAMPLES["pas-submit-request"], day))
    number = certified.json()["entry"][0]["resource"]["preAuthRef"]
    asked = {**EXAMPLES["pas-v1-after"], "date_of_service": day}
    decision = affirming_client.post("/v1/requirements", json=asked).json()["decisions"][0]
    assert decision["pa_needed"] == "satisfied" and decision["authorization"] == number


def test_the_documented_nonconformant_answer_is_the_services(pas_client: TestClient) -> None:
    from pas_helpers import kit
    issue = pas_client.post("/fhir/Claim/$submit", json=kit("kit-nonconformant_pas_bundle.json")).json()["issue"][0]
    documented = f"`400 {issue['expression'][0]}: {issue['diagnostics']}`"
    assert documented in " ".join(DOC.split())
