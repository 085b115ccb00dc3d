"""The PAS response Bundle: the ClaimResponse first, then the resources it references.

Each Claim item is echoed by ``itemSequence`` with its ``adjudication`` (category ``submitted``,
the IG's fixed value) carrying the ``reviewAction`` extension: the X12 306 code (``A1`` certified,
``A4`` pended, ``NA`` no action required) and, when certified, the authorization number; a
certified item also carries ``itemPreAuthIssueDate`` and ``itemPreAuthPeriod`` (the validity the
policy states), and ``ClaimResponse.preAuthRef`` / ``preAuthPeriod`` name the authorization when
the whole request is certified. A pended item carries ``administrationReferenceNumber`` (the
request's id, to quote to the payer) and notes naming the documentation still owed and the policies.
``$inquire`` answers the same ClaimResponse under the inquiry profiles (a Parameters with ``return``
from PAS 2.2).
"""
from __future__ import annotations

import datetime as dt
from collections import deque
from typing import Any, Mapping

from service.fhir.values import reference_key
from service.pas.decide import CERTIFIED, PENDED, REVIEW_ACTION_DISPLAY, ItemDecision
from service.pas.request import PaRequest
from service.pas.versions import PAS_SD, PasVersion

X12_306 = "https://codesystem.x12.org/005010/306"
ADJUDICATION = "http://terminology.hl7.org/CodeSystem/adjudication"
PROFILES = {False: (f"{PAS_SD}/profile-pas-response-bundle", f"{PAS_SD}/profile-claimresponse"),
            True: (f"{PAS_SD}/profile-pas-inquiry-response-bundle", f"{PAS_SD}/profile-claiminquiryresponse")}


def _ext(name: str, **value: Any) -> dict[str, Any]:
    return {"url": f"{PAS_SD}/extension-{name}", **value}


def _period(start: dt.date, end: dt.date) -> dict[str, str]:
    return {"start": start.isoformat(), "end": end.isoformat()}


def _item(decision: ItemDecision, request_id: str, notes: list[dict[str, Any]]) -> dict[str, Any]:
    code = decision.review_action
    action: list[dict[str, Any]] = []
    if decision.authorization:
        action.append({"url": "number", "valueString": decision.authorization})
    action.append(_ext("reviewActionCode", valueCodeableConcept={"coding": [
        {"system": X12_306, "code": code, "display": REVIEW_ACTION_DISPLAY[code]}]}))
    extensions: list[dict[str, Any]] = []
    if decision.item.date_of_service:
        day = dt.date.fromisoformat(decision.item.date_of_service)
        extensions.append(_ext("itemRequestedServiceDate", valuePeriod=_period(day, day)))
    if decision.status == CERTIFIED and decision.valid_from and decision.valid_to:
        extensions.append(_ext("itemPreAuthIssueDate", valueDate=decision.valid_from.isoformat()))
        extensions.append(_ext("itemPreAuthPeriod", valuePeriod=_period(decision.valid_from, decision.valid_to)))
    if decision.status == PENDED:
        extensions.append(_ext("administrationReferenceNumber", valueString=request_id))
    item: dict[str, Any] = {"extension": extensions, "itemSequence": decision.item.sequence, "adjudication": [{
        "extension": [_ext("reviewAction", extension=action)],
        "category": {"coding": [{"system": ADJUDICATION, "code": "submitted"}]}}]}
    texts = [*decision.reasons]
    if decision.owed:
        texts.append("Documentation still owed: " + "; ".join(f"{d['text']} [{d['id']}]" for d in decision.owed) + ".")
    if decision.policies:
        texts.append("Policies: " + "; ".join(f"{p['title']} <{p['url']}>" for p in decision.policies) + ".")
    numbers = []
    for text in texts:
        notes.append({"number": len(notes) + 1, "type": "display", "text": text})
        numbers.append(len(notes))
    if numbers:
        item["noteNumber"] = numbers
    return item


def claim_response(request: PaRequest, decisions: list[ItemDecision], request_id: str,
                   created: dt.datetime, inquiry: bool = False) -> dict[str, Any]:
    """The ClaimResponse answering ``request`` with ``decisions`` (its id is the request's)."""
    claim = request.claim
    notes: list[dict[str, Any]] = []
    items = [_item(d, request_id, notes) for d in decisions]
    response: dict[str, Any] = {
        "resourceType": "ClaimResponse", "id": request_id, "meta": {"profile": [PROFILES[inquiry][1]]},
        "identifier": [{"system": system, "value": value} for system, value in request.claim_identifiers]
        or [{"system": "urn:covreq:pa-request", "value": request_id}],
        "status": "active", "type": claim.get("type") or {"coding": [
            {"system": "http://terminology.hl7.org/CodeSystem/claim-type", "code": "professional"}]},
        "use": "preauthorization", "patient": {"reference": claim["patient"]["reference"]},
        "created": created.isoformat(timespec="seconds"),
        "insurer": {"reference": claim["insurer"]["reference"]},
        "requestor": {"reference": claim["provider"]["reference"]},
        "request": {"reference": f"Claim/{claim['id']}"} if isinstance(claim.get("id"), str) else {
            "identifier": {"system": request.transaction[0], "value": request.transaction[1]}},
        "outcome": "complete",
    }
    certified = [d for d in decisions if d.status == CERTIFIED]
    if certified and len(certified) == len(decisions) and len({d.authorization for d in certified}) == 1:
        response["preAuthRef"] = certified[0].authorization
    if certified:
        start = min(d.valid_from for d in certified if d.valid_from)
        end = max(d.valid_to for d in certified if d.valid_to)
        response["preAuthPeriod"] = _period(start, end)
    if items:
        response["item"] = items
    if notes:
        response["processNote"] = notes
    return response


def response_bundle(request: PaRequest, claim_response: Mapping[str, Any], inquiry: bool = False) -> dict[str, Any]:
    """The response Bundle: ``claim_response`` first, then every resource of the request it references,
    and theirs in turn, each once, under its fullUrl in the request (PAS: every referenced resource is
    in the Bundle; ``ClaimResponse.request`` points back to the Claim, which stays out)."""
    by_key = {reference_key(e["fullUrl"]) or e["fullUrl"]: e for e in request.bundle["entry"]}
    by_key.update({e["fullUrl"]: e for e in request.bundle["entry"]})
    entries = [{"fullUrl": _full_url(request, str(claim_response["id"])), "resource": claim_response}]
    taken: set[int] = {id(request.claim)}
    pending = deque(claim_response[k] for k in claim_response if k != "request")
    while pending:  # breadth first, in element order: the patient, the insurer, the requestor, then theirs
        value = pending.popleft()
        if isinstance(value, list):
            pending.extend(value)
        elif isinstance(value, dict):
            entry = by_key.get(value["reference"]) or by_key.get(reference_key(value["reference"]) or "") \
                if isinstance(value.get("reference"), str) else None
            if entry is not None and id(entry["resource"]) not in taken:
                taken.add(id(entry["resource"]))
                entries.append({"fullUrl": entry["fullUrl"], "resource": entry["resource"]})
                pending.append(entry["resource"])
            pending.extend(v for k, v in value.items() if k != "reference")
    return {"resourceType": "Bundle", "meta": {"profile": [PROFILES[inquiry][0]]},
            "identifier": {"system": request.transaction[0], "value": request.transaction[1]},
            "type": "collection", "timestamp": claim_response["created"], "entry": entries}


def _full_url(request: PaRequest, resource_id: str) -> str:
    """The ClaimResponse's fullUrl: beside the Claim's (``<base>/ClaimResponse/<id>``), else a urn:uuid."""
    claim_url = request.bundle["entry"][0]["fullUrl"]
    if claim_url.startswith(("http://", "https://")) and "/Claim/" in claim_url:
        return f"{claim_url.rsplit('/Claim/', 1)[0]}/ClaimResponse/{resource_id}"
    return f"urn:uuid:{resource_id}"


def inquiry_answer(version: PasVersion, bundles: list[dict[str, Any]]) -> dict[str, Any]:
    """What ``$inquire`` returns: the one inquiry response Bundle (up to PAS 2.1), or a Parameters
    with a ``return`` per Bundle (2.2)."""
    if version.inquire_parameters:
        return {"resourceType": "Parameters", "parameter": [{"name": "return", "resource": b} for b in bundles]}
    return bundles[0]


def as_inquiry(bundle: Mapping[str, Any]) -> dict[str, Any]:
    """A stored response Bundle under the inquiry profiles (the same ClaimResponse, as ``$inquire`` returns it)."""
    entries = [dict(e) for e in bundle["entry"]]
    first = dict(entries[0]["resource"])
    first["meta"] = {**first.get("meta", {}), "profile": [PROFILES[True][1]]}
    entries[0]["resource"] = first
    return {**bundle, "meta": {"profile": [PROFILES[True][0]]}, "entry": entries}
