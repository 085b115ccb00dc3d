"""The PAS response profiles of each version covreq answers in, written from the IG's FSH (HL7/davinci-pas
tags 2.0.1 and 2.2.1, input/fsh/Bundle.fsh, ClaimResponse.fsh, ClaimOperation.fsh) and the Inferno PAS
test kit's payer-server checks (lib/davinci_pas_test_kit/cross_suite/pas_bundle_validation.rb,
server/pas_claim_response_decision_test.rb), independent of the service code: R4 structure (fhir.resources
R4B models), the Bundle invariants by fhirpathpy, the fixed values and bindings covreq's answers touch,
and the kit's rule that every resource the ClaimResponse references (and theirs) is in the Bundle once."""
from __future__ import annotations

from typing import Any

from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.parameters import Parameters
from fhirpathpy import evaluate
from fhirpathpy.models import models

SD = "http://hl7.org/fhir/us/davinci-pas/StructureDefinition"
X12_306 = "https://codesystem.x12.org/005010/306"
REVIEW_ACTION_CODES = {"A1", "A2", "A3", "A4", "A6", "C", "CT", "D", "IP", "NA"}  # X12 306, HCR01 of a 278 response
BUNDLE_INVARIANTS = {"ClaimResponseFirst": "entry.first().resource is ClaimResponse",
                     "collection": "type = 'collection'", "timestamp": "timestamp.exists()",
                     "fullUrl": "entry.all(fullUrl.exists() and resource.exists())",
                     "no-search-request-response": "entry.all(search.empty() and request.empty() and response.empty())"}
CLAIM_RESPONSE_INVARIANTS = {
    "status": "status = 'active'", "use": "use = 'preauthorization'",
    "adjudication-category": "item.adjudication.all(category.coding.where("
                             "system = 'http://terminology.hl7.org/CodeSystem/adjudication' and code = 'submitted').exists())",
    "review-action-once": "item.adjudication.all(extension.where(url = '" + SD + "/extension-reviewAction').count() <= 1)",
}


def _holds(resource: dict[str, Any], expression: str) -> bool:
    return evaluate(resource, expression, [], models["r4"]) == [True]


def _references(value: Any, skip_request: bool) -> list[str]:
    if isinstance(value, list):
        return [r for v in value for r in _references(v, skip_request)]
    if not isinstance(value, dict):
        return []
    found = [value["reference"]] if isinstance(value.get("reference"), str) else []
    for key, inner in value.items():
        if not (skip_request and key == "request" and value.get("resourceType") == "ClaimResponse"):
            found += _references(inner, skip_request)
    return found


def _absolute(reference: str, base: str) -> str:
    return reference if "://" in reference or reference.startswith("urn:") else f"{base}/{reference}"


def check_response_bundle(bundle: dict[str, Any], version: str, inquiry: bool = False,
                          claim: dict[str, Any] | None = None) -> dict[str, Any]:
    """Raise AssertionError naming the first way ``bundle`` breaks the PAS (inquiry) response Bundle
    profile of ``version``; the ClaimResponse. ``claim``: the request's, whose item sequences it echoes."""
    Bundle.model_validate(bundle)
    for name, expression in BUNDLE_INVARIANTS.items():
        assert _holds(bundle, expression), f"Bundle invariant {name} fails: {expression}"
    if not inquiry or version == "2.2":
        assert bundle.get("identifier", {}).get("value"), "the response Bundle needs its identifier (1..1)"
    kind = "inquiry-response-bundle" if inquiry else "response-bundle"
    assert bundle["meta"]["profile"] == [f"{SD}/profile-pas-{kind}"]
    response = bundle["entry"][0]["resource"]
    assert response["meta"]["profile"] == [f"{SD}/profile-claim{'inquiry' if inquiry else ''}response"]
    for name, expression in CLAIM_RESPONSE_INVARIANTS.items():
        assert _holds(response, expression), f"ClaimResponse invariant {name} fails: {expression}"
    assert response["outcome"] in {"complete", "error", "partial"}  # ClaimResponseOutcome (required, 2.2)
    assert response.get("request", {}).get("reference") or response.get("request", {}).get("identifier")  # 1..1, 2.1+
    for item in response.get("item", []):
        for adjudication in item["adjudication"]:
            for action in [e for e in adjudication.get("extension", []) if e["url"] == f"{SD}/extension-reviewAction"]:
                subs = action["extension"]
                codes = [c for s in subs if s["url"] == f"{SD}/extension-reviewActionCode"
                         for c in s["valueCodeableConcept"]["coding"]]
                assert [c["system"] for c in codes] == [X12_306] and codes[0]["code"] in REVIEW_ACTION_CODES
                assert all(isinstance(s["valueString"], str) for s in subs if s["url"] == "number")
                assert {s["url"] for s in subs} <= {"number", f"{SD}/extension-reviewActionCode", "reasonCode",
                                                    "secondSurgicalOpinionFlag"}
    if claim is not None:
        assert [i["itemSequence"] for i in response.get("item", [])] == [i["sequence"] for i in claim["item"]]
    last = bundle["entry"][-1]["fullUrl"]
    base = last.rsplit("/", 2)[0] if "://" in last else ""
    urls = [e["fullUrl"] for e in bundle["entry"]]
    seen, queue = set(), [response]
    while queue:  # the kit's check_presence_of_referenced_resources
        current = queue.pop()
        for reference in _references(current, skip_request=True):
            wanted = _absolute(reference, base)
            assert urls.count(wanted) == 1, f"{wanted} must appear once in the Bundle, not {urls.count(wanted)} times"
            if wanted not in seen:
                seen.add(wanted)
                queue.append(bundle["entry"][urls.index(wanted)]["resource"])
    return response


def review_actions(response: dict[str, Any]) -> list[str]:
    """The X12 306 code of each item, in item order (the kit's decision test reads these)."""
    return [c["code"] for item in response.get("item", []) for a in item["adjudication"]
            for e in a.get("extension", []) if e["url"] == f"{SD}/extension-reviewAction"
            for s in e["extension"] if s["url"] == f"{SD}/extension-reviewActionCode"
            for c in s["valueCodeableConcept"]["coding"] if c["system"] == X12_306]


def inquiry_bundles(answer: dict[str, Any], version: str) -> list[dict[str, Any]]:
    """The inquiry response Bundles of an ``$inquire`` answer: a Parameters of ``return`` Bundles (2.2), else the Bundle."""
    if version == "2.2":
        Parameters.model_validate(answer)
        assert answer["resourceType"] == "Parameters"
        assert all(p["name"] == "return" for p in answer.get("parameter", []))
        return [p["resource"] for p in answer.get("parameter", [])]
    assert answer["resourceType"] == "Bundle"
    return [answer]
