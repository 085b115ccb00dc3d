"""The ``ext-coverage-information`` extension: written from assertions, in the CRD version asked for.

``coverage_information`` is the one place its sub-extensions are built, in exactly the shapes of
the version answered: CRD 2.2 as its profile says; for 2.1 and 2.0.1 the codes they lack are said in
their terms (``_in_version``), and a policy link is a ``detail`` each version allows
(``_policy_link``).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from datetime import date
from typing import Any, Iterable

from service.crd.assertions import Assertion
from service.crd.discovery import CRD_VERSIONS
from service.crd.requests import Order
from service.fhir.values import as_list, member, reference_key

COVERAGE_INFORMATION = "http://hl7.org/fhir/us/davinci-crd/StructureDefinition/ext-coverage-information"
#: reason codes (coverageAssertionReasons) still live in CRD's temp code system
CRD_TEMP = "http://hl7.org/fhir/us/davinci-crd/CodeSystem/temp"
#: detail codes moved to THO (CRD 2.2 value set coverageDetailNew)
COVERAGE_DETAIL = "http://terminology.hl7.org/CodeSystem/crd-coverage-detail"
REASON_DISPLAY = {"no-member-found": "Member not found", "no-active-coverage": "Coverage not active",
                  "coverage-not-found": "Coverage not found", "technical": "Technical issues",
                  "detail-code": "Detail code"}
_REASONS_BEFORE_2_2 = {"gold-card", "detail-code"}
_DOC_2_0 = {"clinical": "clinical", "admin": "admin", "patient": "admin"}


@dataclass(frozen=True)
class Answered:
    """One assertion made for an order under the call's Coverage, with its trace id."""

    order: Order
    coverage: str
    payer_label: str
    assertion: Assertion
    assertion_id: str


def assertion_id(order: str, coverage: str, digest: str, assertions: Iterable[Assertion], *,
                 ehr: str, patient: str | None) -> str:
    """The coverage-assertion-id of an order's answer under one Coverage: the same for every
    repetition (CRD 2.0.1), the same when a call is repeated, and distinct for another EHR (its
    ``fhirServer``), patient (a reference or id), order, Coverage, rule set or answer, so that it can
    serve as the trace number PAS and claims carry. The hook is not part of it: the same answer for
    the same order has the same id whichever hook gave it."""
    patient = reference_key(patient) or (patient if isinstance(patient, str) else "")
    fields = [ehr.rstrip("/"), patient, order, coverage, digest, repr(tuple(assertions))]
    return hashlib.sha256(json.dumps(fields).encode()).hexdigest()[:32]


def coverage_information(answer: Answered, today: date, version: str) -> dict[str, Any]:
    """One ``ext-coverage-information`` repetition, sub-extensions in the profile's order."""
    a = _in_version(answer.assertion, version)
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
    subs += [{"url": "reason", "valueCodeableConcept": _reason(a.reason_code if number == 0 else None, text, version)}
             for number, text in enumerate(a.reasons)]
    subs += [_policy_link(url, version)
             for url in dict.fromkeys(p["url"] for p in a.policies if p.get("url"))]
    subs += [{"url": "questionnaire", "valueCanonical": q} for q in a.questionnaires]
    subs += [{"url": "date", "valueDate": today.isoformat()},
             {"url": "coverage-assertion-id", "valueString": answer.assertion_id}]
    if a.satisfied_pa_id:
        subs.append({"url": "satisfied-pa-id", "valueString": a.satisfied_pa_id})
    return {"url": COVERAGE_INFORMATION, "extension": subs}


def is_about(extension: Any, coverage: str) -> bool:
    """Whether an extension is a coverage-information repetition about ``coverage``."""
    if member(extension, "url") != COVERAGE_INFORMATION:
        return False
    return any(member(sub, "url") == "coverage" and reference_key(member(sub, "valueReference")) == coverage
               for sub in as_list(member(extension, "extension")))


def assertion_ids(extensions: Iterable[Any]) -> list[Any]:
    """The coverage-assertion-id of each coverage-information repetition given."""
    return [next((member(sub, "valueString") for sub in as_list(member(e, "extension"))
                  if member(sub, "url") == "coverage-assertion-id"), None) for e in extensions]


def _reason(code: str | None, text: str, version: str) -> dict[str, Any]:
    """A reason, coded when the version's CRD temp code system has the code (before 2.2 it had
    only ``gold-card`` and ``detail-code``), else its text alone."""
    if code and (version == CRD_VERSIONS[-1] or code in _REASONS_BEFORE_2_2):
        return {"coding": [{"system": CRD_TEMP, "code": code,
                            "display": REASON_DISPLAY.get(code, code)}], "text": text}
    return {"text": text}


def _policy_link(url: str, version: str) -> dict[str, Any]:
    """A ``detail`` naming a policy. 2.2: a category, THO's ``policy-link`` and a url value; 2.1:
    CRD's temporary ``policy-link`` and a url value, no category; 2.0.1: neither the code (its
    extensible value set lacks one, so THO's) nor url values (boolean, string, Quantity, Period)."""
    system = CRD_TEMP if version == "2.1" else COVERAGE_DETAIL
    code = {"url": "code", "valueCodeableConcept": {"coding": [{"system": system, "code": "policy-link",
                                                                "display": "Policy Link"}]}}
    if version == "2.0":
        return {"url": "detail", "extension": [code, {"url": "value", "valueString": url}]}
    if version == "2.1":
        return {"url": "detail", "extension": [code, {"url": "value", "valueUrl": url}]}
    return {"url": "detail", "extension": [{"url": "category", "valueCode": "cat-other"}, code,
                                           {"url": "value", "valueUrl": url}]}


def _in_version(a: Assertion, version: str) -> Assertion:
    """The assertion in the codes of ``version``. Before 2.2 there is no ``indeterminate`` (it is
    ``conditional``) and ``detail-code`` is a reason rather than an info-needed code (a conditional
    left without one gets OTH, the reason saying why); 2.0.1 also has one doc-needed (``both`` for clinical and admin; forms
    the patient fills are gathered by staff, so ``admin``)."""
    if version == CRD_VERSIONS[-1]:
        return a
    info = tuple(code for code in a.info_needed if code != "detail-code")
    reason_code = a.reason_code or ("detail-code" if "detail-code" in a.info_needed else None)
    settled = replace(a, covered=_settle(a.covered), pa_needed=_settle(a.pa_needed))
    if version == "2.0":
        kinds = sorted({_DOC_2_0.get(kind, "conditional") for kind in a.doc_needed})
        settled = replace(settled, doc_needed=("both",) if {"clinical", "admin"} <= set(kinds) else tuple(kinds[:1]))
    else:
        settled = replace(settled, doc_needed=tuple(_settle(kind) or kind for kind in a.doc_needed))
    if "conditional" in (settled.covered, settled.pa_needed, *settled.doc_needed) and not info:
        info = ("OTH",)  # q3: a conditional needs info-needed; the reason says why (q6)
    return replace(settled, info_needed=info, reason_code=reason_code)


def _settle(code: str | None) -> str | None:
    return "conditional" if code == "indeterminate" else code
