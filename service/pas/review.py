"""A reviewer's decision on a pended PAS item, read and checked, and the ClaimResponse it makes.

A reviewer **certifies** (X12 306 ``A1``: an authorization number, valid from the decision date
for as long as the policy states), **modifies** (``A6``: certified with another quantity or other
dates, and a reason), **denies** (``A3``: CMS-0057-F wants a specific reason for every denial,
so a reason and the link to the policy it rests on are required; an X12 886 review decision reason
code may be added), or **pends** the item further (``A4``, with a note; once per request the review
timeframe may be extended by 14 days, 42 CFR 422.568(b)(1)(i) and 422.572(b)(1)). A denied item's
appeal is recorded, and its outcome: approved after appeal (certified) or upheld.

The ClaimResponse ``$inquire`` answers is rebuilt from the request as received and every item's
row: an item nobody has decided since keeps the notes it was answered with.
"""
from __future__ import annotations

import datetime as dt
import re
import secrets
from dataclasses import dataclass
from typing import Any, Mapping

import engine
from engine.evaluation.evaluate import last_valid_day
from service.pas.decide import CERTIFIED, PENDED, ItemDecision
from service.pas.request import PaRequest
from service.pas.response import claim_response, response_bundle
from service.pas.versions import PAS_SD

DENIED, MODIFIED = "denied", "modified"
CERTIFY, MODIFY, DENY, PEND = "certify", "modify", "deny", "pend"
ACTIONS = (CERTIFY, MODIFY, DENY, PEND)
FILED, APPROVED, UPHELD = "filed", "approved", "upheld"
APPEAL_OUTCOMES = (FILED, APPROVED, UPHELD)
#: X12 306 code of a reviewer's decision.
REVIEW_ACTION = {CERTIFY: "A1", MODIFY: "A6", DENY: "A3", PEND: "A4"}
#: The status an item keeps after each decision.
STATUS = {CERTIFY: CERTIFIED, MODIFY: MODIFIED, DENY: DENIED, PEND: PENDED}
#: X12 278 review decision reason codes (HCR03), the code system the PAS IG binds ``reasonCode`` to.
X12_886 = "https://codesystem.x12.org/external/886"
#: How much later a decision is due once a reviewer extends the review timeframe.
EXTENSION = dt.timedelta(days=14)
MAX_REASON = 2000
_REASON_CODE = re.compile(r"[0-9A-Z]{1,3}")
_URL = re.compile(r"https?://[^\s<>\"]{1,2040}")


class BadDecision(Exception):
    """A decision that cannot be taken: a 400 naming the field (not a ValueError: the store reads those
    as a database failure)."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.message, self.field = message, field


@dataclass(frozen=True)
class Decision:
    """A reviewer's decision on one item (or an appeal's outcome), as sent."""

    action: str
    revision: int
    reason: str | None = None
    reason_code: str | None = None
    policy_url: str | None = None
    quantity: float | None = None
    valid_from: dt.date | None = None
    valid_to: dt.date | None = None
    extend: bool = False


def _text(body: Mapping[str, Any], name: str, required: bool, why: str = "") -> str | None:
    value = body.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise BadDecision(f"'{name}' is required{why}: a non-empty string", name)
    if len(value) > MAX_REASON:
        raise BadDecision(f"'{name}' is longer than {MAX_REASON} characters", name)
    return value.strip()


def _day(body: Mapping[str, Any], name: str) -> dt.date | None:
    value = body.get(name)
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value) if isinstance(value, str) and len(value) == 10 else _no_day(name)
    except ValueError:
        return _no_day(name)


def _no_day(name: str) -> dt.date:
    raise BadDecision(f"'{name}' must be a date YYYY-MM-DD", name)


def read_decision(body: Any, appeal: bool = False) -> Decision:
    """Read a decision (or, ``appeal``, an appeal's outcome) body; raises :class:`BadDecision`."""
    if not isinstance(body, dict):
        raise BadDecision("the body must be a JSON object", "")
    name, allowed = ("outcome", APPEAL_OUTCOMES) if appeal else ("action", ACTIONS)
    action = body.get(name)
    if action not in allowed:
        raise BadDecision(f"'{name}' must be one of {', '.join(allowed)}, not {action!r}", name)
    revision = body.get("revision")
    if isinstance(revision, bool) or not isinstance(revision, int) or revision < 0:
        raise BadDecision("'revision' is required: the item's revision you decided on (from the request's items)",
                          "revision")
    denying = action in (DENY, UPHELD)
    reason = _text(body, "reason", denying or action in (MODIFY, PEND),
                   " (CMS-0057-F: a specific reason for every denial)" if denying else "")
    policy_url = body.get("policy_url")
    if denying and not (isinstance(policy_url, str) and _URL.fullmatch(policy_url)):
        raise BadDecision("'policy_url' is required for a denial: the http(s) link of the policy it rests on",
                          "policy_url")
    if policy_url is not None and not (isinstance(policy_url, str) and _URL.fullmatch(policy_url)):
        raise BadDecision("'policy_url' must be an http(s) URL", "policy_url")
    code = body.get("reason_code")
    if code is not None and not (isinstance(code, str) and _REASON_CODE.fullmatch(code)):
        raise BadDecision("'reason_code' must be an X12 886 review decision reason code (1 to 3 letters or "
                          "digits)", "reason_code")
    quantity = body.get("quantity")
    if quantity is not None and (isinstance(quantity, bool) or not isinstance(quantity, (int, float))
                                 or not 0 < quantity < 1e9):
        raise BadDecision("'quantity' must be a positive number", "quantity")
    start, end = _day(body, "valid_from"), _day(body, "valid_to")
    if start and end and end < start:
        raise BadDecision("'valid_to' is before 'valid_from'", "valid_to")
    if action == MODIFY and quantity is None and start is None and end is None:
        raise BadDecision("a modification changes 'quantity', 'valid_from' or 'valid_to'", "quantity")
    extend = body.get("extend", False)
    if not isinstance(extend, bool) or (extend and action != PEND):
        raise BadDecision("'extend' (true or false) extends the review timeframe of a pended item only", "extend")
    return Decision(str(action), revision, reason, code, policy_url,
                    float(quantity) if quantity is not None else None, start, end, extend)


def validity(findings: Mapping[str, Any], ruleset: engine.RuleSet, decision: Decision,
             today: dt.date) -> tuple[dt.date, dt.date]:
    """The validity of an authorization issued ``today``: the reviewer's dates where given, else from
    today for as long as the shortest validity of the item's policies states; raises
    :class:`BadDecision` when neither says how long."""
    start = decision.valid_from or today
    if decision.valid_to:
        return start, decision.valid_to
    stated = [p.auth_validity for p in (ruleset.policy_version(s["id"], s["version"])
                                        for s in findings.get("policies", [])) if p is not None and p.auth_validity]
    if not stated:
        raise BadDecision("no policy of this item states how long an authorization is valid: send 'valid_to'",
                          "valid_to")
    end = min(last_valid_day(start, v) for v in stated)
    if end < start:
        raise BadDecision("'valid_from' is after the validity the policy states", "valid_from")
    return start, end


def authorization_number() -> str:
    """A new authorization number (the form the rules' certifications use)."""
    return f"CQ{secrets.token_hex(8).upper()}"


@dataclass
class Reviewed(ItemDecision):
    """An item's decision as the response shows it: its X12 306 code given (``A3``, ``A6`` too)."""

    action: str = "A4"
    reason_code: str | None = None
    quantity: float | None = None

    @property
    def review_action(self) -> str:
        """The X12 306 code of the decision."""
        return self.action


def _previous_notes(bundle: Mapping[str, Any]) -> dict[int, list[str]]:
    """Each item's note texts in a stored response Bundle, by item sequence."""
    response = bundle["entry"][0]["resource"]
    texts = {n["number"]: n["text"] for n in response.get("processNote", [])}
    return {i["itemSequence"]: [texts[n] for n in i.get("noteNumber", []) if n in texts]
            for i in response.get("item", [])}


def _reviewer_text(row: Mapping[str, Any]) -> list[str]:
    status, who = row["status"], row["decided_by"]
    lines = {DENIED: f"Not certified by reviewer {who}: {row['reason']}",
             MODIFIED: f"Certified with changes by reviewer {who}: {row['reason']}",
             CERTIFIED: f"Certified by reviewer {who}" + (f": {row['reason']}" if row["reason"] else "."),
             PENDED: f"Pended further by reviewer {who}: {row['reason']}"}
    texts = [lines[status]]
    if row["policy_url"]:
        texts.append(f"Policy: <{row['policy_url']}>.")
    if row["appeal_outcome"]:
        texts.append({FILED: "An appeal of this decision is under review.", APPROVED: "Approved after appeal.",
                      UPHELD: "The denial was upheld on appeal."}[row["appeal_outcome"]])
    return texts


def rebuilt(pa: PaRequest, request_id: str, rows: list[Mapping[str, Any]], previous: Mapping[str, Any],
            now: dt.datetime, reviewed: set[int]) -> dict[str, Any]:
    """The response Bundle after a reviewer's decision: items in ``reviewed`` (sequences a reviewer
    decided) say so, the others keep the notes of ``previous`` (the stored response Bundle)."""
    notes, by_sequence = _previous_notes(previous), {i.sequence: i for i in pa.items}
    decisions = []
    for row in rows:
        status = CERTIFIED if row["status"] == MODIFIED else row["status"]
        action = {MODIFIED: "A6", DENIED: "A3"}.get(row["status"], row["review_action"])
        texts = notes.get(row["sequence"], [])
        if row["sequence"] in reviewed:
            texts = (texts if row["status"] == PENDED else []) + _reviewer_text(row)
        decisions.append(Reviewed(by_sequence[row["sequence"]], status, texts, authorization=row["authorization_number"],
                                  valid_from=row["valid_from"], valid_to=row["valid_to"], action=action,
                                  reason_code=row["reason_code"], quantity=row["quantity"]))
    response = claim_response(pa, decisions, request_id, now)
    for item, decision in zip(response.get("item", []), decisions):
        _mark(item, decision)
    return response_bundle(pa, response)


def _mark(item: dict[str, Any], decision: Reviewed) -> None:
    """A denial's reason code in its ``reviewAction``; a modification's authorized quantity."""
    if decision.reason_code:
        review_action = item["adjudication"][0]["extension"][0]["extension"]
        review_action.append({"url": "reasonCode", "valueCodeableConcept": {
            "coding": [{"system": X12_886, "code": decision.reason_code}]}})
    if decision.quantity is not None:
        item["extension"].append({"url": f"{PAS_SD}/extension-itemAuthorizedDetail", "extension": [
            {"url": "quantity", "valueQuantity": {"value": decision.quantity}}]})


def submitter_ids(pa: PaRequest) -> list[str]:
    """The submitting organization's identifier values (the Claim's provider), which PAS
    subscriptions filter on."""
    provider = pa.claim.get("provider", {}).get("reference")
    found = pa.index.resolve(provider) if isinstance(provider, str) else None
    return [str(i["value"]) for i in (found or {}).get("identifier", [])
            if isinstance(i, dict) and isinstance(i.get("value"), str)]
