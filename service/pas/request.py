"""A PAS request Bundle read into what the rules decide by.

The Bundle must be R4, of type ``collection``, carry the submitter's transaction identifier and a
timestamp, and hold the Claim (``use: preauthorization``) as its first entry with every resource the
Claim references (PAS ``ClaimFirst``; the kit's error test sends an empty Bundle): anything else is
refused with a 400 naming the element. The payer is the Coverage's (its payor identifiers, as CRD
and DTR read them: service/crd/payers.py), else the Claim insurer's; the plan is the Coverage's plan
class. Each item gives its code (CPT/HCPCS in ``productOrService``), date, place of service and the
diagnoses its ``diagnosisSequence`` points to; an item without a billing code is read all the same
(it is pended: covreq has no rule for it).
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from service.crd.coverage import member_of
from service.crd.payers import CoveragePayer, PayerMap
from service.fhir import r4
from service.fhir.index import ResourceIndex
from service.fhir.outcome import FhirError
from service.fhir.systems import BILLING_SYSTEMS, ICD10CM, POS, billing_codings
from service.fhir.values import as_list, codings, date_part, member
from service.pas import clock
from service.pas.versions import PasVersion, requested

#: Most Claim items read from one request (X12 278 allows far fewer per service level).
MAX_ITEMS = 100
PRIORITY_SYSTEM = "http://terminology.hl7.org/CodeSystem/processpriority"
LEVEL_OF_SERVICE_URL = "http://hl7.org/fhir/us/davinci-pas/StructureDefinition/extension-levelOfServiceCode"
#: Elements of the Claim holding references that must resolve inside the Bundle.
_REFERENCING = ("patient", "insurer", "provider")


@dataclass(frozen=True)
class Item:
    """One Claim item as the rules read it."""

    sequence: int
    code: str | None  # the CPT/HCPCS code, None when the item names none
    system: str | None
    display: dict[str, Any]  # the productOrService as sent (echoed in the response)
    date_of_service: str | None
    place_of_service: str | None
    diagnoses: tuple[str, ...]


@dataclass(frozen=True)
class PaRequest:
    """Everything covreq reads from one request Bundle."""

    bundle: dict[str, Any]
    version: PasVersion
    claim: dict[str, Any]
    index: ResourceIndex
    transaction: tuple[str, str]  # the submitter's transaction identifier (system, value)
    claim_identifiers: tuple[tuple[str, str], ...]
    payer: CoveragePayer
    member: str | None  # the member id: the Coverage's subscriberId, else its first identifier (crd/coverage.py)
    priority: str  # clock.EXPEDITED or clock.STANDARD
    items: tuple[Item, ...]
    patient_facts: dict[str, Any] = field(default_factory=dict)


def _identifier(value: Any, where: str, what: str) -> tuple[str, str]:
    if not isinstance(value, dict) or not isinstance(value.get("value"), str) or not value["value"].strip():
        raise FhirError(400, f"{what} is required (an Identifier with a value)", where)
    return str(value.get("system", "")), value["value"]


def read_request(bundle: Any, payers: PayerMap, inquiry: bool = False) -> PaRequest:
    """Read a ``$submit`` (or, ``inquiry``, an ``$inquire``) request Bundle; raises FhirError (400)
    naming the first thing that makes it no PAS request Bundle."""
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise FhirError(400, "the body must be a PAS request Bundle", "Bundle")
    version = requested(bundle)
    if bundle.get("type") != "collection":
        raise FhirError(400, "a PAS request Bundle is of type 'collection'", "Bundle.type")
    entries = bundle.get("entry")
    if not isinstance(entries, list) or not entries:
        raise FhirError(400, "the Bundle has no entries: a PAS request Bundle holds the Claim first, then the "
                             "resources it references (ClaimFirst)", "Bundle.entry")
    broken = r4.problems(bundle, "Bundle")
    if broken:
        raise FhirError(400, r4.describe(broken), broken[0].path)
    transaction = _identifier(bundle.get("identifier"), "Bundle.identifier", "the submitter's transaction identifier")
    if not isinstance(bundle.get("timestamp"), str):
        raise FhirError(400, "a PAS request Bundle carries its timestamp", "Bundle.timestamp")
    for number, entry in enumerate(entries):
        if not isinstance(entry.get("fullUrl"), str):
            raise FhirError(400, "every entry of a PAS request Bundle has a fullUrl", f"Bundle.entry[{number}].fullUrl")
    claim = entries[0].get("resource")
    if not isinstance(claim, dict) or claim.get("resourceType") != "Claim":
        raise FhirError(400, "the first entry of a PAS request Bundle must be the Claim (ClaimFirst)",
                        "Bundle.entry[0].resource")
    if claim.get("use") != "preauthorization":
        raise FhirError(400, "a PAS Claim has use 'preauthorization'", "Bundle.entry[0].resource.use")
    index = ResourceIndex([bundle])
    for element in _REFERENCING:
        if index.resolve(claim.get(element)) is None:
            raise FhirError(400, f"Claim.{element} must reference a resource in the Bundle",
                            f"Bundle.entry[0].resource.{element}")
    coverage = _coverage(claim, index)
    payer = payers.identify(coverage, index) if coverage else CoveragePayer("the payer")
    if payer.payer is None:  # the Claim's insurer, identified as a Coverage payor would be
        by_insurer = payers.identify({"payor": [claim["insurer"]]}, index)
        payer = by_insurer if by_insurer.payer else payer
    items = () if inquiry else _items(claim)
    return PaRequest(bundle, version, claim, index, transaction, _claim_identifiers(claim), payer,
                     member_of(coverage), _priority(claim), items, _patient_facts(index.resolve(claim["patient"])))


def _coverage(claim: dict[str, Any], index: ResourceIndex) -> dict[str, Any] | None:
    """The focal Coverage of the Claim's insurance (the first one when none is marked focal)."""
    insurance = [i for i in as_list(claim.get("insurance")) if isinstance(i, dict)]
    ordered = [i for i in insurance if i.get("focal") is True] + [i for i in insurance if i.get("focal") is not True]
    for entry in ordered:
        found = index.resolve(entry.get("coverage"), "Coverage")
        if found is not None:
            return found
    if insurance:
        raise FhirError(400, "Claim.insurance.coverage must reference a Coverage in the Bundle",
                        "Bundle.entry[0].resource.insurance")
    return None


def _claim_identifiers(claim: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted({(str(i.get("system", "")), i["value"]) for i in as_list(claim.get("identifier"))
                         if isinstance(i, dict) and isinstance(i.get("value"), str)}))


def _priority(claim: dict[str, Any]) -> str:
    """Expedited or standard (service/pas/clock.py says when a request is expedited)."""
    if any(c.get("system") == PRIORITY_SYSTEM and c["code"] == "stat" for c in codings(claim.get("priority"))):
        return clock.EXPEDITED
    for extension in as_list(claim.get("extension")):
        if member(extension, "url") == LEVEL_OF_SERVICE_URL and any(
                c.get("system") == clock.LEVEL_OF_SERVICE and c["code"] in clock.EXPEDITED_LEVELS
                for c in codings(extension.get("valueCodeableConcept"))):
            return clock.EXPEDITED
    return clock.STANDARD


def _patient_facts(patient: dict[str, Any] | None) -> dict[str, Any]:
    facts = {k: v for k, v in (("birth_date", date_part(member(patient, "birthDate"))),
                               ("sex", member(patient, "gender"))) if v}
    if facts.get("sex") not in ("female", "male"):
        facts.pop("sex", None)
    return facts


def _items(claim: dict[str, Any]) -> tuple[Item, ...]:
    items = [i for i in as_list(claim.get("item")) if isinstance(i, dict)]
    if not items:
        raise FhirError(400, "a PAS Claim requests at least one item", "Bundle.entry[0].resource.item")
    if len(items) > MAX_ITEMS:
        raise FhirError(413, f"the Claim has {len(items)} items; covreq reads at most {MAX_ITEMS}",
                        "Bundle.entry[0].resource.item")
    diagnoses = {d.get("sequence"): [c["code"] for c in codings(d.get("diagnosisCodeableConcept"))
                                     if c.get("system") == ICD10CM]
                 for d in as_list(claim.get("diagnosis")) if isinstance(d, dict)}
    read, seen = [], set()
    for number, item in enumerate(items):
        sequence = item.get("sequence")
        if sequence in seen:
            raise FhirError(400, f"item sequence {sequence} is used twice",
                            f"Bundle.entry[0].resource.item[{number}].sequence")
        seen.add(sequence)
        coding = next(billing_codings(item.get("productOrService")), None)
        pos = next((c["code"].zfill(2) for c in codings(item.get("locationCodeableConcept"))
                    if c.get("system") == POS), None)
        when = date_part(item.get("servicedDate")) or date_part(member(item.get("servicedPeriod"), "start"))
        if when is not None:
            try:
                dt.date.fromisoformat(when)
            except ValueError:
                raise FhirError(400, f"{when!r} is not a calendar date",
                                f"Bundle.entry[0].resource.item[{number}].serviced") from None
        pointed = [code for s in as_list(item.get("diagnosisSequence")) for code in diagnoses.get(s, [])]
        read.append(Item(sequence, coding["code"] if coding else None,
                         BILLING_SYSTEMS[coding["system"]] if coding else None,
                         item.get("productOrService") or {}, when, pos,
                         tuple(dict.fromkeys(pointed or [c for codes in diagnoses.values() for c in codes]))))
    return tuple(read)
