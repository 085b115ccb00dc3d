"""FHIR -> v1: read a CRD hook call into its orders, the coverages to answer for and the facts.

Only translation happens here: which resource says what. Whether a service needs prior
authorization is the engine's business alone.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

from service.crd.discovery import HOOKS, Configuration
from service.fhir.index import ResourceIndex
from service.fhir.systems import (BILLING_SYSTEMS, ICD10CM, NPI, POS, ROLE_CODE, ROLE_CODE_POS,
                                  billing_codings)
from service.fhir.values import as_list, codings, date_part, member, reference_key
from service.crd.outcome import CrdError
from service.crd.payers import CoveragePayer, PayerMap

#: request resource type -> the elements holding the ordered service's codes
CODE_ELEMENTS = {
    "ServiceRequest": ("code",),
    "DeviceRequest": ("codeCodeableConcept",),
    "MedicationRequest": ("medicationCodeableConcept",),
    "Appointment": ("serviceType", "appointmentType"),
}
#: the resource types CRD lets a hook carry as orders (coverage-information contexts)
ORDER_TYPES = {"ServiceRequest", "DeviceRequest", "MedicationRequest", "NutritionOrder",
               "VisionPrescription", "CommunicationRequest", "Appointment"}
_INACTIVE_CONDITION = {"inactive", "remission", "resolved"}
_UNCONFIRMED_CONDITION = {"refuted", "entered-in-error"}


@dataclass(frozen=True)
class Line:
    """One billing code of an order: the v1 code and system, and the FHIR system URI it came in."""

    code: str
    system: str
    uri: str


@dataclass(frozen=True)
class Order:
    """A request resource to answer for: what it orders and the facts it states itself."""

    resource: dict[str, Any]
    reference: str
    lines: tuple[Line, ...]
    facts: dict[str, Any] = field(default_factory=dict)
    insurance: tuple[str, ...] = ()


@dataclass(frozen=True)
class CoverageContext:
    """A Coverage to answer for; ``problem`` is a CRD reason (code, text) when none can be given."""

    reference: str
    payer: CoveragePayer
    problem: tuple[str, str] | None = None


@dataclass(frozen=True)
class HookCall:
    """Everything covreq reads from one CDS Hooks call."""

    hook: str
    hook_instance: str
    configuration: Configuration
    orders: tuple[Order, ...]
    coverages: tuple[CoverageContext, ...]
    facts: dict[str, Any]


def _require(value: Any, kind: type, expression: str, what: str) -> Any:
    if not isinstance(value, kind) or value in ("", [], {}):
        raise CrdError(400, f"{expression} is required and must be {what}", expression)
    return value


def read_call(body: Any, hook: str, payers: PayerMap, today: date) -> HookCall:
    """Read a hook request; raises CrdError (400 malformed, 412 orders not in the request)."""
    _require(body, dict, "request", "a JSON object")
    if body.get("hook") != hook:
        raise CrdError(400, f"hook must be {hook!r} for this service, got {body.get('hook')!r}", "hook")
    hook_instance = _require(body.get("hookInstance"), str, "hookInstance", "a string")
    context = _require(body.get("context"), dict, "context", "a JSON object")
    _require(context.get("patientId"), str, "context.patientId", "a string")
    configuration = Configuration.from_request(body.get("extension"))
    if not configuration.coverage_info:  # nothing to answer, so nothing more to read
        return HookCall(hook, hook_instance, configuration, (), (), {})
    prefetch = body.get("prefetch")
    if prefetch is not None and not isinstance(prefetch, dict):
        raise CrdError(400, "prefetch must be a JSON object", "prefetch")
    index = ResourceIndex((prefetch or {}).values())
    orders = tuple(_order(resource, start, index)
                   for resource, start in _order_resources(hook, context, index))
    coverages = tuple(_coverage(c, payers, index, today) for c in index.of_type("Coverage"))
    if not coverages and not any(order.insurance for order in orders):
        raise CrdError(400, "no Coverage: the prefetch carries none and no order references one, "
                            "and covreq does not query the EHR", "prefetch.coverage")
    return HookCall(hook, hook_instance, configuration, orders, coverages,
                    _call_facts(context, index))


def v1_request(call: HookCall, order: Order, coverage: CoverageContext) -> dict[str, Any]:
    """The v1 request for one order under one coverage (only facts the FHIR actually states)."""
    request: dict[str, Any] = {"payer": coverage.payer.payer, **call.facts, **order.facts}
    if coverage.payer.plan:
        request["plan"] = coverage.payer.plan
    diagnoses = [*call.facts.get("diagnoses", []), *order.facts.get("diagnoses", [])]
    if diagnoses:
        request["diagnoses"] = list(dict.fromkeys(diagnoses))
    request["services"] = [{"code": line.code, "system": line.system} for line in order.lines]
    return request


def _order_resources(hook: str, context: dict[str, Any],
                     index: ResourceIndex) -> list[tuple[dict[str, Any], str | None]]:
    """The request resources to answer for, each with its appointment's start when booked."""
    name = HOOKS[hook]
    if hook == "order-dispatch":
        refs = _require(context.get(name), list, f"context.{name}", "a list of references")
        found = [index.resolve(ref, *ORDER_TYPES) for ref in refs]
        missing = [str(ref) for ref, res in zip(refs, found) if res is None]
        if missing:
            raise CrdError(412, f"dispatched orders not in the prefetch: {', '.join(missing)}",
                           f"context.{name}")
        return [(res, None) for res in found if res is not None]
    bundle = _require(context.get(name), dict, f"context.{name}", "a FHIR Bundle")
    if bundle.get("resourceType") != "Bundle":
        raise CrdError(400, f"context.{name} must be a FHIR Bundle", f"context.{name}")
    resources = [res for res in ResourceIndex.flatten(bundle) if res["resourceType"] in ORDER_TYPES]
    for number, res in enumerate(resources):
        if not isinstance(res.get("id"), str):
            raise CrdError(400, "every order needs an id to be updated", f"context.{name}.entry[{number}]")
    if hook == "order-select" and isinstance(context.get("selections"), list):
        chosen = {ref for ref in context["selections"] if isinstance(ref, str)}
        resources = [res for res in resources if f"{res['resourceType']}/{res['id']}" in chosen]
    if hook == "appointment-book":
        return [_appointment_target(res, index) for res in resources]
    return [(res, None) for res in resources]


def _appointment_target(appointment: dict[str, Any],
                        index: ResourceIndex) -> tuple[dict[str, Any], str | None]:
    """CRD updates the order an Appointment is based on when that order is at hand."""
    for ref in as_list(appointment.get("basedOn")):
        based_on = index.resolve(ref, "ServiceRequest", "DeviceRequest", "MedicationRequest")
        if based_on is not None:
            return based_on, date_part(appointment.get("start"))
    return appointment, None


def _order(resource: dict[str, Any], appointment_start: str | None, index: ResourceIndex) -> Order:
    concepts: list[Any] = []
    for element in CODE_ELEMENTS.get(resource["resourceType"], ()):
        concepts += as_list(resource.get(element))
    medication = index.resolve(resource.get("medicationReference"), "Medication")
    if medication is not None:
        concepts.append(medication.get("code"))
    lines = {(c["code"], BILLING_SYSTEMS[c["system"]]): Line(c["code"], BILLING_SYSTEMS[c["system"]],
                                                             c["system"])
             for concept in concepts for c in billing_codings(concept)}
    facts: dict[str, Any] = {}
    when = (appointment_start or date_part(resource.get("occurrenceDateTime"))
            or date_part(member(resource.get("occurrencePeriod"), "start"))
            or date_part(resource.get("start")))
    if when:
        facts["date_of_service"] = when
    locations = [index.resolve(ref, "Location") for ref in as_list(resource.get("locationReference"))]
    _place(facts, as_list(resource.get("locationCode")), [loc for loc in locations if loc])
    diagnoses = _icd10(as_list(resource.get("reasonCode")))
    if diagnoses:
        facts["diagnoses"] = diagnoses
    npi = _npi(resource.get("requester"), index) or _npi(resource.get("performer"), index)
    if npi:
        facts["provider"] = {"npi": npi}
    insurance = tuple(key for key in map(reference_key, as_list(resource.get("insurance")))
                      if key and key.startswith("Coverage/"))
    return Order(resource, f"{resource['resourceType']}/{resource['id']}", tuple(lines.values()),
                 facts, insurance)


def _coverage(coverage: dict[str, Any], payers: PayerMap, index: ResourceIndex,
              today: date) -> CoverageContext:
    if not isinstance(coverage.get("id"), str):
        raise CrdError(400, "a Coverage without an id cannot be referenced", "prefetch.coverage")
    reference = f"Coverage/{coverage['id']}"
    payer = payers.identify(coverage, index)
    ended = date_part(member(coverage.get("period"), "end"))
    if coverage.get("status", "active") != "active" or (ended and ended < today.isoformat()):
        return CoverageContext(reference, payer, (
            "no-active-coverage", f"The coverage with {payer.label} is not active."))
    if payer.payer is None:
        return CoverageContext(reference, payer, (
            "no-member-found", f"This service holds no coverage rules for {payer.label}."))
    return CoverageContext(reference, payer)


def _call_facts(context: dict[str, Any], index: ResourceIndex) -> dict[str, Any]:
    facts: dict[str, Any] = {}
    patient = index.resolve(f"Patient/{context['patientId']}", "Patient") or next(
        iter(index.of_type("Patient")), None)
    if patient:
        person = {k: v for k, v in (("birth_date", date_part(patient.get("birthDate"))),
                                    ("sex", patient.get("gender"))) if v}
        if person.get("sex") not in ("female", "male"):
            person.pop("sex", None)
        if person:
            facts["patient"] = person
    encounter = index.resolve(f"Encounter/{context.get('encounterId')}", "Encounter") or next(
        iter(index.of_type("Encounter")), None)
    if encounter:
        locations = [index.resolve(loc.get("location"), "Location")
                     for loc in as_list(encounter.get("location")) if isinstance(loc, dict)]
        _place(facts, [], [loc for loc in locations if loc])
    if "state" not in facts and patient:
        homes = [a for a in as_list(patient.get("address")) if isinstance(a, dict)
                 and a.get("use") != "old" and not member(a.get("period"), "end")]
        state = next((a["state"] for a in homes if _is_state(a.get("state"))), None)
        if state:
            facts["state"] = state.upper()
    diagnoses = _icd10(condition.get("code") for condition in index.of_type("Condition")
                       if _current(condition))
    if diagnoses:
        facts["diagnoses"] = diagnoses
    return facts


def _place(facts: dict[str, Any], concepts: list[Any], locations: list[dict[str, Any]]) -> None:
    """Set place_of_service and state from location codes and Location resources, first found."""
    for concept in [*concepts, *(t for loc in locations for t in as_list(loc.get("type")))]:
        for coding in codings(concept):
            pos = (coding["code"].zfill(2) if coding.get("system") == POS
                   else ROLE_CODE_POS.get(coding["code"]) if coding.get("system") == ROLE_CODE else None)
            if pos and "place_of_service" not in facts:
                facts["place_of_service"] = pos
    for loc in locations:
        state = member(loc.get("address"), "state")
        if _is_state(state) and "state" not in facts:
            facts["state"] = state.upper()


def _is_state(value: Any) -> bool:
    return isinstance(value, str) and len(value) == 2 and value.isalpha()


def _icd10(concepts: Any) -> list[str]:
    return list(dict.fromkeys(c["code"] for concept in concepts for c in codings(concept)
                              if c.get("system") == ICD10CM))


def _current(condition: dict[str, Any]) -> bool:
    clinical = {c["code"] for c in codings(condition.get("clinicalStatus"))}
    verification = {c["code"] for c in codings(condition.get("verificationStatus"))}
    return not clinical & _INACTIVE_CONDITION and not verification & _UNCONFIRMED_CONDITION


def _npi(reference: Any, index: ResourceIndex) -> str | None:
    """The NPI of a requester/performer: the resource's own, or its PractitionerRole's practitioner."""
    resource = index.resolve(reference, "Practitioner", "PractitionerRole", "Organization")
    if resource is None:
        return None
    candidates = [resource]
    if resource["resourceType"] == "PractitionerRole":
        candidates.append(index.resolve(resource.get("practitioner"), "Practitioner") or {})
    return next((i["value"] for res in candidates for i in as_list(res.get("identifier"))
                 if isinstance(i, dict) and i.get("system") == NPI and isinstance(i.get("value"), str)),
                None)
