"""CRD assertions -> the CDS Hooks response: coverage-information systemActions and cards."""
from __future__ import annotations

import copy
import hashlib
import uuid
from dataclasses import dataclass
from datetime import date
from typing import Any

from service.crd.assertions import Assertion
from service.fhir.values import as_list
from service.crd.requests import Order

COVERAGE_INFORMATION = "http://hl7.org/fhir/us/davinci-crd/StructureDefinition/ext-coverage-information"
CRD_TEMP = "http://hl7.org/fhir/us/davinci-crd/CodeSystem/temp"
CARD_TYPE = "http://terminology.hl7.org/CodeSystem/cdshooks-card-type"
REASON_DISPLAY = {"no-member-found": "Member not found", "no-active-coverage": "Coverage not active",
                  "coverage-not-found": "Coverage not found"}
SUMMARY_LIMIT = 139


@dataclass(frozen=True)
class Answered:
    """One assertion made for an order under one coverage, with its trace id."""

    order: Order
    coverage: str
    payer_label: str
    assertion: Assertion
    assertion_id: str


def assertion_id(hook_instance: str, order: str, coverage: str, code: str, digest: str) -> str:
    """A coverage-assertion-id that is stable for the same call, order, coverage, code and rules."""
    return hashlib.sha256("|".join((hook_instance, order, coverage, code, digest)).encode()).hexdigest()[:32]


def coverage_information(answer: Answered, today: date) -> dict[str, Any]:
    """One ``ext-coverage-information`` repetition, sub-extensions in the profile's order."""
    a = answer.assertion
    subs: list[dict[str, Any]] = [
        {"url": "coverage", "valueReference": {"reference": answer.coverage}},
        {"url": "covered", "valueCode": a.covered},
    ]
    if a.pa_needed:
        subs.append({"url": "pa-needed", "valueCode": a.pa_needed})
    subs += [{"url": "doc-needed", "valueCode": c} for c in a.doc_needed]
    subs += [{"url": "doc-purpose", "valueCode": c} for c in a.doc_purpose]
    subs += [{"url": "info-needed", "valueCode": c} for c in a.info_needed]
    if a.line:
        subs.append({"url": "billingCode", "valueCoding": {"system": a.line.uri, "code": a.line.code}})
    subs += [{"url": "reason", "valueCodeableConcept": _reason(a, text)} for text in a.reasons]
    subs += [_policy_link(url) for url in dict.fromkeys(p["url"] for p in a.policies if p.get("url"))]
    subs += [{"url": "questionnaire", "valueCanonical": q} for q in a.questionnaires]
    subs += [{"url": "date", "valueDate": today.isoformat()},
             {"url": "coverage-assertion-id", "valueString": answer.assertion_id}]
    if a.satisfied_pa_id:
        subs.append({"url": "satisfied-pa-id", "valueString": a.satisfied_pa_id})
    return {"url": COVERAGE_INFORMATION, "extension": subs}


def _reason(a: Assertion, text: str) -> dict[str, Any]:
    if a.reason_code:
        return {"coding": [{"system": CRD_TEMP, "code": a.reason_code,
                            "display": REASON_DISPLAY.get(a.reason_code, a.reason_code)}], "text": text}
    return {"text": text}


def _policy_link(url: str) -> dict[str, Any]:
    return {"url": "detail", "extension": [
        {"url": "category", "valueCode": "cat-other"},
        {"url": "code", "valueCodeableConcept": {"coding": [{"system": CRD_TEMP, "code": "policy-link"}]}},
        {"url": "value", "valueUrl": url}]}


def system_actions(answers: list[Answered], today: date) -> list[dict[str, Any]]:
    """One ``update`` per order: the order as sent, its coverage-information replaced by ours."""
    actions = []
    for order in dict.fromkeys(a.order.reference for a in answers):
        mine = [a for a in answers if a.order.reference == order]
        resource = copy.deepcopy(mine[0].order.resource)
        kept = [e for e in as_list(resource.get("extension")) if not
                (isinstance(e, dict) and e.get("url") == COVERAGE_INFORMATION)]
        resource["extension"] = kept + [coverage_information(a, today) for a in mine]
        actions.append({"type": "update", "description": f"Coverage information for {order}",
                        "resource": resource})
    return actions


def cards(answers: list[Answered], max_cards: int) -> list[dict[str, Any]]:
    """One card per order and coverage for the codes needing prior authorization, then one for
    the codes whose answer is conditional; at most ``max_cards``."""
    groups: dict[tuple[bool, str, str], list[Answered]] = {}
    for answer in answers:
        a = answer.assertion
        if a.pa_needed == "auth-needed" or "conditional" in (a.covered, a.pa_needed):
            key = (a.pa_needed != "auth-needed", answer.order.reference, answer.coverage)
            groups.setdefault(key, []).append(answer)
    return [_card(groups[key], conditional=key[0]) for key in sorted(groups, key=lambda k: k[0])][:max_cards]


def _card(group: list[Answered], conditional: bool) -> dict[str, Any]:
    first = group[0]
    what = ", ".join(f"{a.assertion.line.system} {a.assertion.line.code}" if a.assertion.line
                     else first.order.reference for a in group)
    if conditional:
        needs = ", ".join(dict.fromkeys(f.replace("_", " ") for a in group
                                        for f in a.assertion.facts_needed)) or "more information"
        summary = f"{first.payer_label}: requirements for {what} depend on {needs}"
    else:
        summary = f"{first.payer_label}: prior authorization needed for {what}"
    detail: list[str] = []
    for a in group:
        label = f"{a.assertion.line.system} {a.assertion.line.code}" if a.assertion.line else "Order"
        detail += [f"**{label}**"] + [f"- {r}" for r in a.assertion.reasons]
        detail += [f"- Documentation: {d['text']} ({d['kind']})" for d in a.assertion.documentation]
    policies = {p["url"]: p for a in group for p in a.assertion.policies if p.get("url")}
    card: dict[str, Any] = {
        "uuid": str(uuid.uuid4()),
        "summary": summary if len(summary) <= SUMMARY_LIMIT else summary[:SUMMARY_LIMIT - 1] + "…",
        "indicator": "info",
        "detail": "\n".join(detail),
        "source": {"label": first.payer_label,
                   "topic": {"system": CARD_TYPE, "code": "coverage-info",
                             "display": "Coverage Information"}},
        "extension": {"davinci-crd.associated-resource": [{"reference": first.order.reference}]},
    }
    if policies:
        card["links"] = [{"label": f"{p['title']} (version {p['version']})" if p.get("version")
                          else p["title"], "url": url, "type": "absolute"} for url, p in policies.items()]
    return card
