"""FHIR -> v1: read a CRD hook call into its orders, the Coverage to answer for and the facts.

Only translation happens here: which resource says what. Whether a service needs prior
authorization is the engine's business alone.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from typing import Any, Collection, Mapping

from service.crd.coverage import CoverageContext, primary_coverage
from service.crd.discovery import HOOKS, SUPPORTING_HOOKS, Configuration
from service.crd.envelope import Envelope, Limits, require
from service.fhir.outcome import FhirError
from service.crd.payers import PayerMap
from service.fhir import r4
from service.fhir.index import ResourceIndex
from service.fhir.systems import (BILLING_SYSTEMS, ICD10CM, NPI, POS, ROLE_CODE, ROLE_CODE_POS,
                                  billing_codings)
from service.fhir.values import as_list, codings, date_part, member, reference_key

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
#: the CRD versions whose appointment-book answer updates the ServiceRequest an Appointment is based on
UPDATE_BASED_ON = {"2.2"}
#: what to answer for: the request resource read, its appointment's start when booked, its R4
#: problems, and the resource the answer updates when that is another (the booked Appointment)
Target = tuple[dict[str, Any], str | None, tuple[r4.Problem, ...], dict[str, Any] | None]
#: Encounter.class (v3 ActCode) -> the place of service it settles, when no location says
ENCOUNTER_POS = {"EMER": "23", "IMP": "21", "HH": "12"}
#: Most trip dates read from an order's occurrenceTiming (a year of daily trips)
MAX_TRIPS = 366
_PERIOD_DAYS = {"d": 1, "wk": 7}
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
    display: str = ""  # what the order is called on a card: its own text, not its id
    problems: tuple[r4.Problem, ...] = ()  # how it breaks R4: then nothing else of it is read
    line_facts: dict[str, Any] = field(default_factory=dict)  # facts of each of its service lines


@dataclass(frozen=True)
class HookCall:
    """Everything covreq reads from one CDS Hooks call."""

    hook: str
    hook_instance: str
    configuration: Configuration
    orders: tuple[Order, ...]
    coverage: CoverageContext
    facts: dict[str, Any]
    failures: tuple[str, ...] = ()  # EHR queries that failed, in words (CRD resp-43)
    fhir_server: str = ""  # the EHR the call comes from (``fhirServer``), "" when it does not say
    patient: str = ""  # ``Patient/<context.patientId>``


def read_call(envelope: Envelope, index: ResourceIndex, payers: PayerMap, served: set[str],
              today: date, coverage_known: bool, unqueried: str = "") -> HookCall:
    """Read the orders, the primary Coverage and the facts of a hook call from its context and
    every resource at hand (prefetch and queries); raises FhirError (400, 412) saying why not.
    ``coverage_known``: the patient's Coverages were searched (prefetch ``coverage`` or a query),
    so finding none is the EHR's answer (400), not data covreq could not get (412, saying why:
    ``unqueried``)."""
    hook, context = envelope.hook, envelope.context
    facts = _call_facts(context, index)  # first, so one reading notes every reference it misses
    orders = tuple(_invalid_order(resource, problems) if problems else
                   _updating(_order(resource, start, index, envelope.limits.billing_codes), updated)
                   for resource, start, problems, updated in
                   _order_resources(hook, context, index, envelope.invalid_orders, envelope.configuration.version))
    _check_lines(orders, envelope.limits, f"context.{HOOKS[hook]}")
    insurance = {ref for order in orders for ref in order.insurance}
    expression = "prefetch.coverage" if "coverage" in envelope.prefetch else "Coverage"
    if len(index.of_type("Coverage")) > envelope.limits.coverages:
        raise FhirError(413, f"the call's Coverages (prefetch and EHR) number {len(index.of_type('Coverage'))}; "
                            f"this service reads at most {envelope.limits.coverages} (COVREQ_CRD_MAX_COVERAGES)",
                       expression)
    if not coverage_known and not index.of_type("Coverage"):
        raise FhirError(412, "no Coverage: the prefetch carries no Coverage search and covreq could "
                            f"not query the EHR for one: {unqueried or 'no query was possible'}", expression)
    coverage = primary_coverage(index.of_type("Coverage"), payers, served, index, insurance, today,
                                expression)
    return HookCall(hook, envelope.hook_instance, envelope.configuration, orders, coverage, facts,
                    fhir_server=envelope.fhir_server, patient=f"Patient/{context['patientId']}")


def plan_problem(coverage: CoverageContext, plans: Collection[str]) -> str | None:
    """Why the Coverage's plan cannot be answered for, or None. A plan class the payer mapping does
    not map, or maps to a plan the rule set does not list, is never answered as no plan or another
    plan (issue 22): the answer depends on the plan. A payer whose rules know no plans has none to
    tell apart."""
    payer = coverage.payer
    if not plans or payer.plan in plans or (payer.plan is None and payer.plan_class is None):
        return None
    known = ", ".join(sorted(plans))
    if payer.plan is None:
        return (f"The Coverage names plan {payer.plan_class!r}, which the payer mapping does not map to a "
                f"{payer.label} plan covreq holds rules for ({known}); the answer depends on the plan.")
    return (f"The payer mapping maps the Coverage's plan {payer.plan_class!r} to {payer.plan!r}, which is not "
            f"a plan of {payer.payer!r} in the rule set ({known}); the answer depends on the plan.")


def _check_lines(orders: tuple[Order, ...], limits: Limits, where: str) -> None:
    """413 before any decision when the orders together carry more billing codes than allowed."""
    lines = sum(len(order.lines) for order in orders)
    if lines > limits.lines:
        raise FhirError(413, f"the orders carry {lines} billing codes; this service answers at most "
                             f"{limits.lines} per call (COVREQ_CRD_MAX_LINES)", where)


def v1_request(call: HookCall, order: Order, plans: Collection[str] | None = None) -> dict[str, Any]:
    """The v1 request for one order under the call's Coverage (only facts the FHIR actually states);
    the mapped plan only when it is one of ``plans``, the payer's plans in the rule set (a payer
    whose rules know none is asked without; :func:`plan_problem` says what to do with the others).
    ``plans`` None: the mapped plan as it is."""
    payer = call.coverage.payer
    request: dict[str, Any] = {"payer": payer.payer, **call.facts, **order.facts}
    if payer.plan and (plans is None or payer.plan in plans):
        request["plan"] = payer.plan
    diagnoses = [*call.facts.get("diagnoses", []), *order.facts.get("diagnoses", [])]
    if diagnoses:
        request["diagnoses"] = list(dict.fromkeys(diagnoses))
    request["services"] = [{"code": line.code, "system": line.system, **order.line_facts} for line in order.lines]
    return request


def _order_resources(hook: str, context: dict[str, Any], index: ResourceIndex,
                     invalid: Mapping[int, tuple[r4.Problem, ...]], version: str) -> list[Target]:
    """The request resources to answer for (see ``Target``), in CRD ``version``; R4 problems are
    ``invalid``'s, by entry number."""
    name = HOOKS[hook]
    if hook == "order-dispatch":
        if name not in context and isinstance(context.get("order"), str):
            name = "order"  # the hook's older context, the one CRD 2.0.1 describes: order (and task)
            refs = [context["order"]]
        else:
            refs = require(context.get(name), list, f"context.{name}", "a list of references")
        found = [index.resolve(ref, *ORDER_TYPES) for ref in refs]
        missing = [str(ref) for ref, res in zip(refs, found) if res is None]
        if missing:
            raise FhirError(412, f"dispatched orders neither in the prefetch nor read from the EHR: "
                                f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}", f"context.{name}")
        return [(res, None, (), None) for res in found if res is not None]
    bundle = require(context.get(name), dict, f"context.{name}", "a FHIR Bundle")
    if bundle.get("resourceType") != "Bundle":
        raise FhirError(400, f"context.{name} must be a FHIR Bundle", f"context.{name}")
    resources = []
    for number, entry in enumerate(as_list(bundle.get("entry"))):
        res, where = member(entry, "resource"), f"context.{name}.entry[{number}].resource"
        kind = member(res, "resourceType")
        if not isinstance(kind, str) or kind not in ORDER_TYPES:  # a list or object is no type (and unhashable)
            if hook in SUPPORTING_HOOKS:
                continue  # a supporting hook's answer is optional (CRD hook-17)
            raise FhirError(400, f"{kind!r} is not a request resource CRD answers for "
                                f"({', '.join(sorted(ORDER_TYPES))})", where)
        if not isinstance(res.get("id"), str):
            raise FhirError(400, "every order needs an id to be updated", where)
        resources.append((res, invalid.get(number, ())))
    if hook == "order-select" and isinstance(context.get("selections"), list):
        chosen = {ref for ref in context["selections"] if isinstance(ref, str)}
        resources = [(res, bad) for res, bad in resources if f"{res['resourceType']}/{res['id']}" in chosen]
    if hook == "appointment-book":
        return [(res, None, bad, None) if bad else _appointment_target(res, index, version) for res, bad in resources]
    return [(res, None, bad, None) for res, bad in resources]


def _appointment_target(appointment: dict[str, Any], index: ResourceIndex, version: str) -> Target:
    """An Appointment is answered from the order it is based on when that order is at hand, with
    the appointment's start as date of service. The answer updates the Appointment (CRD 2.0.1 and
    2.1: "the request resource that was passed"), except that CRD 2.2 updates the ServiceRequest
    an Appointment is based on (cards.html, "the one exception")."""
    for ref in as_list(appointment.get("basedOn")):
        based_on = index.resolve(ref, "ServiceRequest", "DeviceRequest", "MedicationRequest")
        if based_on is not None:
            start = date_part(appointment.get("start"))
            if version in UPDATE_BASED_ON and based_on["resourceType"] == "ServiceRequest":
                return based_on, start, (), None
            return based_on, start, (), appointment
    return appointment, None, (), None


def _updating(order: Order, updated: dict[str, Any] | None) -> Order:
    """``order`` as the answer for ``updated`` (an Appointment read from the order it is based on)."""
    if updated is None:
        return order
    return replace(order, resource=updated, reference=f"{updated['resourceType']}/{updated['id']}")


def _invalid_order(resource: dict[str, Any], problems: tuple[r4.Problem, ...]) -> Order:
    """An order that is not valid R4: named, never read (CRD: no update of it is valid either)."""
    return Order(resource, f"{resource['resourceType']}/{resource['id']}", (), display=_kind_and_id(resource),
                 problems=problems)


def _order(resource: dict[str, Any], appointment_start: str | None, index: ResourceIndex,
           max_codes: int) -> Order:
    concepts: list[Any] = []
    for element in CODE_ELEMENTS.get(resource["resourceType"], ()):
        concepts += as_list(resource.get(element))
    medication = index.resolve(resource.get("medicationReference"), "Medication")
    if medication is not None:
        concepts.append(medication.get("code"))
    codes = [c for concept in concepts for c in billing_codings(concept)]
    reference = f"{resource['resourceType']}/{resource['id']}"
    if len(codes) > max_codes:
        raise FhirError(413, f"{reference} carries {len(codes)} billing codes; this service reads at most "
                            f"{max_codes} per order (COVREQ_CRD_MAX_BILLING_CODES)", reference)
    lines = {(c["code"], BILLING_SYSTEMS[c["system"]]): Line(c["code"], BILLING_SYSTEMS[c["system"]], c["system"])
             for c in codes}
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
    trips = trip_dates(resource.get("occurrenceTiming"), when)
    if trips and not when:
        facts["date_of_service"] = trips[0]  # a schedule's first occurrence
    return Order(resource, reference, tuple(lines.values()), facts, insurance, _display(resource, concepts),
                 line_facts={"trip_dates": trips} if len(trips) > 1 else {})


def trip_dates(timing: Any, start: str | None) -> list[str]:
    """The dates of a schedule (a FHIR Timing): its ``event`` dates, or the ``repeat`` of a
    frequency per period of days or weeks from ``boundsPeriod.start`` (else ``start``) for
    ``count`` times or through ``boundsPeriod.end``; each is taken as a round trip. [] when the
    Timing says neither."""
    events = sorted({d for d in map(date_part, as_list(member(timing, "event"))) if d and _calendar(d)})
    if events:
        return events[:MAX_TRIPS]
    repeat = member(timing, "repeat")
    bounds = member(repeat, "boundsPeriod")
    first = date_part(member(bounds, "start")) or start
    frequency, period = member(repeat, "frequency") or 1, member(repeat, "period") or 1
    unit, count, last = member(repeat, "periodUnit"), member(repeat, "count"), date_part(member(bounds, "end"))
    if (not first or unit not in _PERIOD_DAYS or not all(type(n) in (int, float) and n > 0 for n in (frequency, period))
            or (count is None and last is None) or (count is not None and type(count) is not int)):
        return []
    step = period * _PERIOD_DAYS[unit] / frequency
    found: list[str] = []
    try:
        day, end = date.fromisoformat(first), date.fromisoformat(last) if last else None
        while len(found) < min(count if count is not None else MAX_TRIPS, MAX_TRIPS):
            when = day + timedelta(days=int(len(found) * step))
            if end is not None and when > end:
                break
            found.append(when.isoformat())
    except (ValueError, OverflowError):  # not a calendar date, or a schedule past the calendar's end
        pass
    return found


def _calendar(day: str) -> bool:
    """Whether a YYYY-MM-DD is a calendar date (2026-02-30 is not)."""
    try:
        date.fromisoformat(day)
    except ValueError:
        return False
    return True


def _display(resource: dict[str, Any], concepts: list[Any]) -> str:
    """The order's name for people: the text or display of what it orders, else its kind and id."""
    described = [*concepts, *(as_list(member(resource.get("oralDiet"), "type"))),
                 *(member(s, "type") for s in as_list(resource.get("supplement"))),
                 *(member(lens, "product") for lens in as_list(resource.get("lensSpecification")))]
    for concept in described:
        text = member(concept, "text") or next((c["display"] for c in codings(concept)
                                                if isinstance(c.get("display"), str)), None)
        if isinstance(text, str) and text.strip():
            return " ".join(text.split())
    if isinstance(resource.get("description"), str) and resource["description"].strip():
        return " ".join(resource["description"].split())
    return _kind_and_id(resource)


def _kind_and_id(resource: dict[str, Any]) -> str:
    """``service request s1``: an order's name for people when it says none itself."""
    spoken = re.sub(r"(?<!^)(?=[A-Z])", " ", resource["resourceType"]).lower()
    return f"{spoken} {resource['id']}"


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
    encounter_id = context.get("encounterId")
    encounter = (index.resolve(f"Encounter/{encounter_id}", "Encounter") if isinstance(encounter_id, str)
                 else None) or next(iter(index.of_type("Encounter")), None)
    if encounter:
        locations = [index.resolve(loc.get("location"), "Location")
                     for loc in as_list(encounter.get("location")) if isinstance(loc, dict)]
        _place(facts, [], [loc for loc in locations if loc])
        kind = member(encounter.get("class"), "code")
        if "place_of_service" not in facts and kind in ENCOUNTER_POS:
            facts["place_of_service"] = ENCOUNTER_POS[kind]
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
