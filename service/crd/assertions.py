"""v1 decisions -> CRD coverage assertions, in CRD's vocabulary and within invariants q1-q9.

An ``Assertion`` is one coverage-information repetition before it is written as FHIR: the
mapping from covreq's answer (pa_needed, covered, documentation, info_needed) to CRD's codes
lives here, and only here.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from service.crd.requests import Line

#: v1 info_needed fact -> CRD info-needed code; facts not listed need "OTH" (with a reason, q6)
INFO_CODES = {
    "place_of_service": "location", "type_of_bill": "location", "state": "location",
    "date_of_service": "timeframe",
    "code": "detail-code", "system": "detail-code", "modifiers": "detail-code", "units": "detail-code",
    "stage": "detail-code", "trial_place_of_service": "detail-code", "other_codes": "detail-code",
    "revenue_code": "detail-code", "round_trips_in_10_days": "timeframe", "round_trip_weeks": "timeframe",
}
_PERFORMER_PREFIX = "provider."
_PA_NEEDS_PA_DOCS = {"auth-needed", "conditional"}
_SUPPORTING_HOOK_DOC_KINDS = {"patient"}  # supporting hooks ask for no clinical/admin documents
_FAILURES_SHOWN = 3


@dataclass(frozen=True)
class Assertion:
    """One coverage assertion about one billing code (or about a whole order when it has none)."""

    covered: str
    pa_needed: str | None = None
    doc_needed: tuple[str, ...] = ()
    doc_purpose: tuple[str, ...] = ()
    info_needed: tuple[str, ...] = ()
    line: Line | None = None
    reasons: tuple[str, ...] = ()
    reason_code: str | None = None  # codes the first reason (CRD coverageAssertionReasons)
    documentation: tuple[dict[str, Any], ...] = ()
    policies: tuple[dict[str, Any], ...] = ()
    questionnaires: tuple[str, ...] = ()
    satisfied_pa_id: str | None = None
    facts_needed: tuple[str, ...] = ()


def info_code(fact: str) -> str:
    """The CRD info-needed code for a missing v1 fact."""
    return "performer" if fact.startswith(_PERFORMER_PREFIX) else INFO_CODES.get(fact, "OTH")


def crd_code(value: str) -> str:
    """A v1 ``pa_needed`` / ``covered`` value in CRD's codes: covreq's ``unknown`` (a code no rule
    covreq holds lists, for a payer whose rules are not its whole list) is CRD's ``indeterminate``,
    the payer "unable to evaluate coverage requirements": never ``covered`` or ``no-auth`` without a
    rule that says so, and not ``conditional``, which would promise that more information decides."""
    return "indeterminate" if value == "unknown" else value


def from_decision(decision: dict[str, Any], line: Line, supporting_hook: bool) -> Assertion:
    """The assertion for one engine decision about one billing code."""
    covered = crd_code(decision["covered"])
    pa_needed = None if covered == "not-covered" else crd_code(decision["pa_needed"])  # q2
    documentation = tuple(decision.get("documentation", []))
    if supporting_hook:
        documentation = tuple(d for d in documentation if d["kind"] in _SUPPORTING_HOOK_DOC_KINDS)
    doc_needed = tuple(dict.fromkeys(d["kind"] for d in documentation))
    doc_purpose = (() if not doc_needed
                   else ("withpa",) if pa_needed in _PA_NEEDS_PA_DOCS else ("withclaim",))  # q4
    conditional = "conditional" in (covered, pa_needed)
    facts = tuple(decision.get("info_needed", [])) if conditional else ()  # q3
    info = tuple(dict.fromkeys(info_code(f) for f in facts)) or (("OTH",) if conditional else ())
    reasons = tuple(decision.get("reasons", []))
    if info:  # q6: OTH needs a reason; say which facts in any case
        reasons += (_needs_sentence(facts),)
    if doc_purpose and not reasons:  # q8
        reasons += (f"Documentation is required for {line.system} {line.code}.",)
    return Assertion(
        covered=covered, pa_needed=pa_needed, doc_needed=doc_needed, doc_purpose=doc_purpose,
        info_needed=info, line=line, reasons=reasons, documentation=documentation,
        policies=tuple(decision.get("policies", [])),
        questionnaires=tuple(decision.get("questionnaire", [])) if doc_needed else (),  # q1
        satisfied_pa_id=decision.get("authorization") if pa_needed == "satisfied" else None,  # q5
        facts_needed=facts)


def coverage_problem(code: str, text: str) -> Assertion:
    """Not covered because the member or coverage cannot be resolved (CRD resp-44/45)."""
    return Assertion(covered="not-covered", reasons=(text,), reason_code=code)


def no_billing_code(reference: str) -> Assertion:
    """An order with no CPT/HCPCS code: the answer waits for a billing code (CRD detail-code)."""
    return Assertion(covered="conditional", pa_needed="conditional", info_needed=("detail-code",),
                     reasons=(f"{reference} carries no CPT or HCPCS code; coverage requirements "
                              "are decided per billing code.",), facts_needed=("code",))


def plan_unknown(line: Line | None, why: str) -> Assertion:
    """The Coverage names a plan covreq cannot map to one its rules know: the answer is conditional
    on the plan (info-needed OTH, the plan named in the reason), never the answer of another plan."""
    return Assertion(covered="conditional", pa_needed="conditional", info_needed=("OTH",), line=line,
                     reasons=(why, _needs_sentence(("plan",))), facts_needed=("plan",))


def unreadable(line: Line | None, why: str) -> Assertion:
    """An answer that cannot be given because what the order says is malformed (CRD found-34:
    the order's other codes, and the call's other orders, are still answered)."""
    return Assertion(covered="indeterminate", pa_needed="indeterminate", line=line, reasons=(why,))


def not_r4(reference: str, problems: str) -> Assertion:
    """An order that is not valid FHIR R4 (``problems``: r4.describe's words, with the paths):
    ``indeterminate``, the reason naming what is wrong. An update of it would be invalid too, so it
    gets a card and no systemAction (service/crd/responses.py); the call's other orders are answered."""
    return Assertion(covered="indeterminate", pa_needed="indeterminate",
                     reasons=(f"{reference} is {problems}; covreq answers for it once it is.",))


def technical(assertion: Assertion, failures: tuple[str, ...]) -> Assertion:
    """CRD resp-43: an answer that turned on data the EHR failed to give is ``indeterminate``,
    reason ``technical``, the failed queries in its text; a settled answer stands as it is."""
    if not failures or "conditional" not in (assertion.covered, assertion.pa_needed):
        return assertion
    text = ("covreq could not read what decides this from the EHR's FHIR server: "
            + "; ".join(failures[:_FAILURES_SHOWN]) + (" ..." if len(failures) > _FAILURES_SHOWN else ""))
    def settle(code: str | None) -> str | None:
        return "indeterminate" if code == "conditional" else code
    return replace(assertion, covered=settle(assertion.covered), pa_needed=settle(assertion.pa_needed),
                   info_needed=(), reasons=(text, *assertion.reasons), reason_code="technical")


def _needs_sentence(facts: tuple[str, ...]) -> str:
    named = ", ".join(f.replace("_", " ") for f in facts) if facts else "more information"
    return f"The answer depends on information not in the request: {named}."
