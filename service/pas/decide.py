"""Each item of a PAS request decided by the rules: certified, pended or no prior authorization needed.

covreq never denies: a denial is a person's decision. An item is **certified** (X12 306 ``A1``) only
when the rules say it needs prior authorization, every documentation item they owe is present (in a
verified DTR response of the policy's form or an attached document), the answers of that response
agree with the Claim (code, date of service, every fact both state), and every policy deciding it
allows automatic affirmation (``authorization.automatic_affirmation``). An item the rules say needs
no prior authorization is answered ``NA`` (no action required). Anything else is **pended** (``A4``)
for a clinical reviewer, with the documentation still owed, why, and the policy links.
"""
from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass, field
from typing import Any, Mapping

import engine
from engine.evaluation.evaluate import last_valid_day
from engine.policy import AUTH_NEEDED, NO_AUTH, Policy
from service.dtr import facts as f
from service.pas.evidence import Evidence
from service.pas.request import Item, PaRequest

CERTIFIED, PENDED, NOT_REQUIRED = "certified", "pended", "not-required"
#: X12 306 (Healthcare Services Outcome / review action) code of each status.
REVIEW_ACTION = {CERTIFIED: "A1", PENDED: "A4", NOT_REQUIRED: "NA"}
REVIEW_ACTION_DISPLAY = {"A1": "Certified in total", "A4": "Pended", "NA": "No Action Required",
                         "A3": "Not Certified", "A6": "Modified"}
#: Who decided an item the rules decided (a reviewer's id replaces it).
RULES = "covreq-rules"


@dataclass
class ItemDecision:
    """The decision on one Claim item."""

    item: Item
    status: str
    reasons: list[str]
    owed: list[dict[str, Any]] = field(default_factory=list)  # documentation items still owed
    policies: list[dict[str, Any]] = field(default_factory=list)
    authorization: str | None = None
    valid_from: dt.date | None = None
    valid_to: dt.date | None = None
    findings: dict[str, Any] = field(default_factory=dict)  # the engine's decision, for the reviewer

    @property
    def review_action(self) -> str:
        """The X12 306 code of the decision."""
        return REVIEW_ACTION[self.status]


def decide_all(request: PaRequest, evidence: Evidence, ruleset: engine.RuleSet, today: dt.date,
               decided: list[dict[str, Any]]) -> list[ItemDecision]:
    """Every item's decision (the engine's decisions are also appended to ``decided``, for the audit)."""
    return [_decide(request, item, evidence, ruleset, today, decided) for item in request.items]


def _claim_facts(request: PaRequest, item: Item, plans: frozenset[str]) -> dict[str, Any]:
    """The flat facts the Claim states for ``item``."""
    facts: dict[str, Any] = {"payer": request.payer.payer, "code": item.code}
    if request.payer.plan and request.payer.plan in plans:
        facts["plan"] = request.payer.plan
    for name, value in (("date_of_service", item.date_of_service), ("place_of_service", item.place_of_service),
                        ("diagnoses", list(item.diagnoses))):
        if value:
            facts[name] = value
    facts.update({f"patient.{k}": v for k, v in request.patient_facts.items()})
    return facts


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return {str(x).upper() for x in a} == {str(x).upper() for x in b}
    return str(a).strip().upper() == str(b).strip().upper()


def _disagreements(claim: Mapping[str, Any], form: Mapping[str, Any]) -> list[str]:
    """The facts a DTR response states otherwise than the Claim (the Claim is what is authorized)."""
    return [name for name in sorted(claim.keys() & form.keys())
            if name not in ("payer", "plan", "system") and not _same(claim[name], form[name])]


def _decide(request: PaRequest, item: Item, evidence: Evidence, ruleset: engine.RuleSet, today: dt.date,
            decided: list[dict[str, Any]]) -> ItemDecision:
    if item.code is None:
        return ItemDecision(item, PENDED, ["The item names no CPT or HCPCS code, so no rule of covreq decides it: "
                                           "a reviewer will."])
    if request.payer.payer is None:
        return ItemDecision(item, PENDED, [f"{request.payer.label} is not a payer covreq holds rules for (no "
                                           "identifier of the payer file matches): a reviewer will decide."])
    claim = _claim_facts(request, item, ruleset.plans(request.payer.payer))
    try:
        first = ruleset.evaluate({**f.v1_body(claim), "explain": True})["decisions"][0]
    except engine.RequestError as err:
        return ItemDecision(item, PENDED, [f"The rules cannot read this item ({err.location}: {err.message}): "
                                           "a reviewer will decide."])
    forms = [evidence.forms[p["id"]] for p in first["policies"] if p["id"] in evidence.forms]
    disagreeing = sorted({name for form in forms for name in _disagreements(claim, {**form.facts, **form.known})})
    merged = {k: v for form in forms for k, v in form.facts.items()}
    decision = first
    if forms and not disagreeing:
        decision = ruleset.evaluate({**f.v1_body({**merged, **claim}), "explain": True})["decisions"][0]
    decided.append(decision)
    result = ItemDecision(item, PENDED, list(decision["reasons"]), policies=list(decision["policies"]),
                          findings=decision)
    if decision["pa_needed"] == NO_AUTH:
        result.status = NOT_REQUIRED
        return result
    policies = _requiring(ruleset, decision, dt.date.fromisoformat(item.date_of_service or today.isoformat()))
    present: set[str] = set().union(*(evidence.present(p["id"]) for p in decision["policies"])) \
        if decision["policies"] else set(evidence.documents)
    result.owed = [doc for doc in decision["documentation"] if doc["id"] not in present]
    if disagreeing:
        result.reasons.append(f"The DTR response disagrees with the Claim on {', '.join(disagreeing)}: "
                              "a reviewer will decide.")
    if evidence.unverified:
        result.reasons.append("Unverified documentation (read by a reviewer, never by the rules): "
                              + "; ".join(evidence.unverified) + ".")
    if decision["pa_needed"] != AUTH_NEEDED or disagreeing:
        if decision.get("info_needed"):
            result.reasons.append(f"Still depends on: {', '.join(decision['info_needed'])}.")
        return result
    if result.owed:
        return result
    if not policies or not all(p.auto_affirm and p.auth_validity for p in policies):
        result.reasons.append("The documentation the rules owe is present; the policy is affirmed by a reviewer, "
                              "not automatically.")
        return result
    validity = min((p.auth_validity for p in policies if p.auth_validity),
                   key=lambda v: last_valid_day(today, v))
    valid_to = last_valid_day(today, validity)
    if item.date_of_service and not today.isoformat() <= item.date_of_service <= valid_to.isoformat():
        result.reasons.append(f"The date of service {item.date_of_service} is outside the {today.isoformat()} to "
                              f"{valid_to.isoformat()} an authorization issued today would cover (none is retroactive): "
                              "a reviewer will decide.")
        return result
    result.status, result.valid_from, result.valid_to = CERTIFIED, today, valid_to
    result.authorization = f"CQ{secrets.token_hex(8).upper()}"
    result.reasons.append(f"Certified by the rules: every documentation item is present; valid "
                          f"{today.isoformat()} to {result.valid_to.isoformat()}.")
    return result


def _requiring(ruleset: engine.RuleSet, decision: Mapping[str, Any], day: dt.date) -> list[Policy]:
    """The policies of an explained ``decision`` whose own answer needs prior authorization: its
    deciding rule's (the first true one in the trace), else its default; a paused policy needs none.
    Only these must allow automatic affirmation (another program governing the code may answer no-auth)."""
    found = []
    for summary in decision["policies"]:
        policy = ruleset.policy_version(summary["id"], summary["version"])
        if policy is None or policy.pause_on(day) is not None:
            continue
        deciding = next((t["rule"] for t in decision.get("trace", [])
                         if t["policy"] == policy.id and t["version"] == policy.version and t["result"] == "true"), None)
        outcome = next((r.outcome for r in policy.rules if r.id == deciding), policy.default)
        if outcome.pa_needed == AUTH_NEEDED:
            found.append(policy)
    return found
