"""Building PAS requests for the tests: the kit's payloads, adapted copies with CPT codes, and the
DTR response a provider fills before submitting."""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from service.fhir.systems import POS

REPO = Path(__file__).resolve().parents[3]
KIT = REPO / "tests" / "fixtures" / "pas"  # the PAS test kit's examples, see SOURCES.md there
BUNDLED_RULES = REPO / "rules"
CPT = "http://www.ama-assn.org/go/cpt"
MEDICARE = {"system": "urn:covreq:payer", "value": "medicare"}  # the bundled payer file's identifier
PLAN_CLASS = "http://terminology.hl7.org/CodeSystem/coverage-class"
#: A person's answer, as a DTR 2.0.1 client stamps it (information-origin ``manual``).
MANUAL = {"url": "http://hl7.org/fhir/us/davinci-dtr/StructureDefinition/information-origin",
          "extension": [{"url": "source", "valueCode": "manual"}, {"url": "author", "extension": [
              {"url": "practitioner", "valueReference": {"reference": "Practitioner/ReferralPractitionerExample"}}]}]}


def kit(name: str) -> dict[str, Any]:
    """A fresh copy of one of the kit's files."""
    return json.loads((KIT / name).read_text(encoding="utf-8"))


def resource(bundle: dict[str, Any], kind: str) -> dict[str, Any]:
    """The first resource of a type in a Bundle."""
    return next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == kind)


def adapted(code: str = "15823", pos: str = "22", day: str = "2024-03-14", transaction: str = "T-1",
            trace: str = "111099") -> dict[str, Any]:
    """The kit's approval payload adapted for a rules decision: a CPT code, a place of service and a
    date of service on its item, a Medicare insurer (the payer file's identifier) and plan class, and
    its own transaction identifier and Claim identifier (patient event trace number)."""
    bundle = kit("kit-preset-approval_pa_submit_request_payload.json")
    bundle["identifier"]["value"] = transaction
    claim = bundle["entry"][0]["resource"]
    claim["identifier"][0]["value"] = trace
    item = claim["item"][0]
    item["productOrService"] = {"coding": [{"system": CPT, "code": code}]}
    item["locationCodeableConcept"] = {"coding": [{"system": POS, "code": pos}]}
    item["servicedDate"] = day
    item.pop("modifier", None)  # the kit's item modifier is an HCPCS code, not a modifier
    resource(bundle, "Organization")  # the requestor stays as the kit has it
    insurer = next(e["resource"] for e in bundle["entry"] if e["resource"]["id"] == "InsurerExample")
    insurer["identifier"].append(dict(MEDICARE))
    coverage = resource(bundle, "Coverage")
    coverage["class"] = [{"type": {"coding": [{"system": PLAN_CLASS, "code": "plan"}]}, "value": "Medicare Part B"}]
    return bundle


def inquiry(transaction: str = "I-1", trace: str = "111099") -> dict[str, Any]:
    """The kit's inquiry payload, its insurer identified as Medicare, asking for Claim identifier ``trace``."""
    bundle = kit("kit-preset-pa_inquire_request_payload.json")
    bundle["identifier"]["value"] = transaction
    bundle["entry"][0]["resource"]["identifier"][0]["value"] = trace
    insurer = next(e["resource"] for e in bundle["entry"] if e["resource"]["id"] == "InsurerExample")
    insurer["identifier"].append(dict(MEDICARE))
    return bundle


def with_resource(bundle: dict[str, Any], added: dict[str, Any]) -> dict[str, Any]:
    """``bundle`` with ``added`` as a further entry, referenced from the Claim's supportingInfo."""
    result = copy.deepcopy(bundle)
    base = result["entry"][0]["fullUrl"].rsplit("/Claim/", 1)[0]
    result["entry"].append({"fullUrl": f"{base}/{added['resourceType']}/{added['id']}", "resource": added})
    claim = result["entry"][0]["resource"]
    infos = claim.setdefault("supportingInfo", [])
    infos.append({"sequence": len(infos) + 1, "category": {"coding": [{
        "system": "http://hl7.org/fhir/us/davinci-pas/CodeSystem/PASTempCodes", "code": "additionalInformation"}]},
        "valueReference": {"reference": f"{added['resourceType']}/{added['id']}"}})
    return result


def completed_dtr(client: TestClient, code: str = "15823", pos: str = "22", day: str = "2024-03-14") -> dict[str, Any]:
    """The DTR response a provider completes for the order (a ServiceRequest under a Medicare
    Coverage): packaged, every documentation item attached or attested, then answered by
    $next-question until completed."""
    order = {"resourceType": "ServiceRequest", "id": "sr-1", "status": "draft", "intent": "order",
             "subject": {"reference": "Patient/SubscriberExample"}, "code": {"coding": [{"system": CPT, "code": code}]},
             "occurrenceDateTime": day, "insurance": [{"reference": "Coverage/InsuranceExample"}],
             "locationCode": [{"coding": [{"system": POS, "code": pos}]}]}
    coverage = {"resourceType": "Coverage", "id": "InsuranceExample", "status": "active",
                "beneficiary": {"reference": "Patient/SubscriberExample"}, "payor": [{"identifier": MEDICARE}],
                "class": [{"type": {"coding": [{"system": PLAN_CLASS, "code": "plan"}]}, "value": "Medicare Part B"}]}
    reply = client.post("/fhir/Questionnaire/$questionnaire-package", json={"resourceType": "Parameters", "parameter": [
        {"name": "coverage", "resource": coverage}, {"name": "order", "resource": order}]})
    assert reply.status_code == 200, reply.text
    package = next(p["resource"] for p in reply.json()["parameter"] if p["name"].lower() == "packagebundle")
    response = next(e["resource"] for e in package["entry"] if e["resource"]["resourceType"] == "QuestionnaireResponse")
    documents = [i for g in response["contained"][0]["item"] if g["linkId"] == "documentation" for i in g["item"]]
    answered = [{"linkId": i["linkId"], "answer": [{
        **({"valueAttachment": {"title": "record.pdf", "url": "https://ehr.example/doc/1"}} if i["type"] == "attachment"
           else {"valueBoolean": True}), "extension": [MANUAL]}]} for i in documents]
    response = copy.deepcopy(response)
    response.setdefault("item", []).append({"linkId": "documentation", "item": answered})
    done = client.post("/fhir/Questionnaire/$next-question", json=response)
    assert done.status_code == 200, done.text
    completed = done.json()
    assert completed["status"] == "completed", completed
    completed["id"] = "dtr-1"
    return completed
