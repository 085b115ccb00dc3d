"""The Coverage a hook call is answered for: the one whose payer this service serves (CRD hook-13).

A CRD endpoint answers for its own payers only. The primary Coverage is found by payer identifier
(names only when the operator opts in); a call with no Coverage, with Coverages of payers this
service does not serve, or with several of its own that nothing tells apart is a 400, never a
``not-covered`` that an EHR would apply to the order.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any, Iterable

from service.fhir.outcome import FhirError
from service.crd.payers import CoveragePayer, PayerMap
from service.fhir.index import ResourceIndex
from service.fhir.values import date_part, member

_SHOWN = 5  # Coverages named in one refusal; the rest are counted


@dataclass(frozen=True)
class CoverageContext:
    """The Coverage to answer for; ``problem`` is a CRD reason (code, text) when none can be given."""

    reference: str
    payer: CoveragePayer
    problem: tuple[str, str] | None = None
    member: str | None = None  # the member id (:func:`member_of`): authorizations on file are found by it


def primary_coverage(candidates: Iterable[dict[str, Any]], payers: PayerMap, served: set[str],
                     index: ResourceIndex, insurance: set[str], today: date,
                     expression: str) -> CoverageContext:
    """The one Coverage among ``candidates`` whose payer is served, preferring those the orders'
    ``insurance`` names; raises FhirError 400 saying why when there is not exactly one."""
    found: dict[str, CoveragePayer] = {}
    resources: dict[str, dict[str, Any]] = {}
    for coverage in candidates:
        if not isinstance(coverage.get("id"), str):
            raise FhirError(400, "a Coverage without an id cannot be referenced", expression)
        reference = f"Coverage/{coverage['id']}"
        resources.setdefault(reference, coverage)
        found.setdefault(reference, payers.identify(coverage, index))
    if not found:
        raise FhirError(400, "no Coverage accessible: neither the prefetch nor the EHR holds an active "
                            "Coverage for this patient (a null or empty prefetch.coverage is the EHR's "
                            "answer that it has none)", expression)
    ours = [ref for ref, payer in found.items() if payer.payer in served]
    if len(ours) > 1:
        named = [ref for ref in ours if ref in insurance]
        ours = named if len(named) == 1 else ours
    if len(ours) > 1:
        raise FhirError(400, f"several Coverages belong to payers this service serves "
                            f"({', '.join(ours[:_SHOWN])}{', ...' if len(ours) > _SHOWN else ''}) "
                            "and no order's insurance singles one out; send the primary Coverage only",
                       expression)
    if not ours:
        raise FhirError(400, _not_served(found, payers, served), expression)
    reference = ours[0]
    return CoverageContext(reference, found[reference], _inactive(resources[reference], found[reference], today),
                           member_of(resources[reference]))


def member_of(coverage: dict[str, Any] | None) -> str | None:
    """The member id of a Coverage: its ``subscriberId``, else its first identifier's value."""
    if coverage is None:
        return None
    if isinstance(coverage.get("subscriberId"), str) and coverage["subscriberId"].strip():
        return str(coverage["subscriberId"])
    return next((i["value"] for i in coverage.get("identifier") or [] if isinstance(i, dict)
                 and isinstance(i.get("value"), str) and i["value"].strip()), None)


def _not_served(found: dict[str, CoveragePayer], payers: PayerMap, served: set[str]) -> str:
    """Why no Coverage is this service's: no payer identifier, or a payer it does not serve."""
    problems = []
    for reference, payer in found.items():
        if payer.payer is not None:
            problems.append(f"{reference}: payer {payer.label!r} maps to covreq payer {payer.payer!r}, "
                            "for which the rule set holds no rules")
        elif not payer.identifiers:
            hint = "" if payers.match_by_name else " (matching payers by name is off: match_by_name)"
            problems.append(f"{reference}: the payor carries no identifier (Coverage.payor.identifier "
                            f"or the payor Organization's identifier){hint}")
        else:
            shown = ", ".join(f"{system}|{value}" if system else value
                              for system, value in sorted(payer.identifiers))
            problems.append(f"{reference}: payer {payer.label!r} ({shown}) is not served by this service")
    shown = problems[:_SHOWN] + ([f"and {len(problems) - _SHOWN} more"] if len(problems) > _SHOWN else [])
    return "no Coverage of a payer this service serves: " + "; ".join(shown)


def _inactive(coverage: dict[str, Any], payer: CoveragePayer, today: date) -> tuple[str, str] | None:
    """CRD resp-45: a Coverage that is not in force answers ``not-covered``, ``no-active-coverage``."""
    ended = date_part(member(coverage.get("period"), "end"))
    if coverage.get("status", "active") != "active" or (ended and ended < today.isoformat()):
        return ("no-active-coverage", f"The coverage with {payer.label} is not active.")
    return None
