"""Building CDS Hooks calls to covreq's CRD services and reading their answers, for the tests."""
from __future__ import annotations

import datetime as dt
from typing import Any

from fhir.resources.R4B import get_fhir_model_class

CPT = "http://www.ama-assn.org/go/cpt"
HCPCS = "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets"
HCPCS_BLUEBUTTON = "https://bluebutton.cms.gov/resources/codesystem/hcpcs"
POS = "https://www.cms.gov/Medicare/Coding/place-of-service-codes/Place_of_Service_Code_Set"
CARD_TYPE = "http://terminology.hl7.org/CodeSystem/cdshooks-card-type"
TODAY = dt.date.today().isoformat()
PAYER_IDS = "http://example.org/payer-ids"  # the identifier system of fixtures/payers.yaml


def acme_coverage(cov_id: str = "COV1", payer: str = "Acme Health Plan", status: str = "active",
                  payer_id: str = "ACME-01") -> dict:
    """A searchset Bundle with one Coverage of Acme (payer identifier ``payer_id``), plan gold."""
    return {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": {
        "resourceType": "Coverage", "id": cov_id, "status": status,
        "beneficiary": {"reference": "Patient/p1"},
        "payor": [{"reference": "Organization/payer", "display": payer,
                   "identifier": {"system": PAYER_IDS, "value": payer_id}}],
        "class": [{"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/coverage-class",
                                         "code": "plan"}]}, "value": "gold"}]}}]}


def service_request(sr_id: str, code: str, system: str = CPT, pos: str | None = None) -> dict:
    """A draft ServiceRequest for one billing code, with a place of service when given."""
    resource: dict[str, Any] = {"resourceType": "ServiceRequest", "id": sr_id, "status": "draft",
                                "intent": "order", "subject": {"reference": "Patient/p1"},
                                "code": {"coding": [{"system": system, "code": code}]}}
    if pos:
        resource["locationCode"] = [{"coding": [{"system": POS, "code": pos}]}]
    return resource


def order_sign(*orders: dict, prefetch: dict | None = None, **extra: Any) -> dict:
    """An order-sign call for ``orders``; the prefetch holds Acme's Coverage unless given."""
    return {"hook": "order-sign", "hookInstance": "c5a6a3c2-8a1b-4c53-9d5e-000000000001",
            "context": {"userId": "Practitioner/u1", "patientId": "p1",
                        "draftOrders": {"resourceType": "Bundle", "type": "collection",
                                        "entry": [{"resource": o} for o in orders]}},
            "prefetch": {"coverage": acme_coverage()} if prefetch is None else prefetch, **extra}


def post(client, body: dict, service: str | None = None):
    """POST a hook call to its service (``<hook>-crd`` unless ``service`` is given)."""
    return client.post(f"/cds-services/{service or body['hook'] + '-crd'}", json=body)


def repetitions(response: dict, reference: str, crd) -> list[dict]:
    """The coverage-information repetitions of the update for ``reference``, checked q1..q9."""
    action = next(a for a in response["systemActions"] if
                  f"{a['resource']['resourceType']}/{a['resource']['id']}" == reference)
    assert action["type"] == "update" and action["description"]
    return crd.coverage_information(action)


def by_code(extensions: list[dict], crd) -> dict[str, dict[str, list]]:
    """Repetitions' sub-extensions keyed by their billing code."""
    return {crd.subs(e)["billingCode"][0]["valueCoding"]["code"]: crd.subs(e) for e in extensions}


def value(subs: dict[str, list], url: str) -> list:
    """The values of every sub-extension ``url``."""
    return [next(v for k, v in s.items() if k.startswith("value")) for s in subs.get(url, [])]


def assert_ok(response, crd) -> dict:
    """A 200 answer that follows CDS Hooks and CRD: no empty values, one assertion id per order."""
    assert response.status_code == 200, response.text
    body = response.json()
    assert isinstance(body["systemActions"], list), "systemActions always present (the Inferno CRD kit)"
    crd.no_empty_values({k: v for k, v in body.items() if k not in ("cards", "systemActions")}
                        | {"cards": body["cards"] or [0], "systemActions": body["systemActions"] or [0]})
    assert body["extension"]["covreq.ruleset"] == response.headers["x-covreq-ruleset"]
    ids: dict[tuple[str, str], set[str]] = {}
    for action in body.get("systemActions", []):
        for extension in crd.coverage_information(action):
            subs = crd.subs(extension)
            key = (action["resource"]["id"], value(subs, "coverage")[0]["reference"])
            ids.setdefault(key, set()).add(value(subs, "coverage-assertion-id")[0])
    assert all(len(shared) == 1 for shared in ids.values()), "one coverage-assertion-id per order and coverage"
    assert len(set().union(*ids.values())) == len(ids), "distinct ids for distinct orders and coverages"
    for action in body.get("systemActions", []):  # only valid R4 goes out
        get_fhir_model_class(action["resource"]["resourceType"]).model_validate(action["resource"])
    for card in body["cards"]:
        assert len(card["summary"]) < 140 and card["indicator"] == "info" and card["uuid"]
        assert card["source"]["topic"] == {"system": CARD_TYPE, "code": "coverage-info",
                                           "display": "Coverage Information"}
    return body


def assert_outcome(response, status: int, expression: str | None = None) -> dict:
    """A refusal: ``status`` with an OperationOutcome naming ``expression``; its issue."""
    assert response.status_code == status, response.text
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["meta"]["tag"][0]["code"] == response.headers["x-covreq-ruleset"]
    issue = outcome["issue"][0]
    assert issue["severity"] == "error" and issue["diagnostics"]
    if expression:
        assert issue["expression"] == [expression]
    return issue


def repaired_inferno_order_sign(request: dict) -> dict:
    """Inferno's order-sign fixture made valid R4: it has no Bundle.type, no NutritionOrder.intent
    and an object for dosageInstruction.doseAndRate, which R4 makes a list."""
    request["context"]["draftOrders"]["type"] = "collection"
    nutrition, medication = (e["resource"] for e in request["context"]["draftOrders"]["entry"])
    nutrition["intent"] = "order"
    dosage = medication["dosageInstruction"][0]
    dosage["doseAndRate"] = [dosage["doseAndRate"]]
    return request
