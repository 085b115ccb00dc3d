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
    """The DTR response a provider completes for the order: packaged, every documentation item
    attached or attested, answered by $next-question until completed."""
    from tests.service.dtr.dtr_helpers import (answer, bundles, form_of, items, package_request, response_of,
                                               service_request)
    reply = client.post("/fhir/Questionnaire/$questionnaire-package",
                        json=package_request(service_request(code=code, pos=pos, day=day)))
    assert reply.status_code == 200, reply.text
    response = response_of(bundles(reply.json())[0])
    for item in items(form_of(response), "documentation"):
        response = answer(response, item["linkId"], {"valueAttachment": {"title": "record.pdf", "url": "https://ehr.example/doc/1"}}
                          if item["type"] == "attachment" else {"valueBoolean": True})
    done = client.post("/fhir/Questionnaire/$next-question", json=response)
    assert done.status_code == 200, done.text
    completed = done.json()
    assert completed["status"] == "completed", completed
    completed["id"] = "dtr-1"
    return completed
