"""The reviewers' API and page: the queue of pended PAS requests, one request with the rules'
findings, a decision on an item, and an appeal's outcome (docs/pas.md, "The reviewer's decision").

Every call needs a reviewer's key (service/pas/reviewers.py). A decision updates what ``$inquire``
answers, notifies the submitter's subscriptions (after the answer is sent), and is written to the
audit trail under the reviewer's name, without the reason's text (it may quote the patient's record).
"""
from __future__ import annotations

import datetime as dt
from typing import Any, Mapping

from fastapi import APIRouter, BackgroundTasks, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse, Response

from service.auth import Caller
from service.dtr.limits import off_loop
from service.lookup import CONTENT_SECURITY_POLICY, STATIC
from service.pas import review_store as rs
from service.pas.decide import CERTIFIED, PENDED
from service.pas.notifier import notify_decision
from service.pas.request import read_request
from service.pas.review import (APPROVED, DENIED, EXTENSION, FILED, MODIFIED, REVIEW_ACTION, STATUS, UPHELD,
                                BadDecision, Decision, Reviewed, authorization_number, read_decision, rebuilt,
                                submitter_ids, validity)
from service.pas.reviewers import CHALLENGE, ReviewerRefused
from service.pas.routes import store_of
from service.pas.store import _utc
from service.responses import UNAUDITED, json_response, v1_error
from service.store.replay import StoreUnavailable
from service.v1 import parse_json

PAGE, API = "/review", "/review/api"
_ASSETS = {"review.js": "text/javascript", "review.css": "text/css"}
router = APIRouter(tags=["PAS reviewers"])


@router.get(PAGE, include_in_schema=False)
def page() -> FileResponse:
    """The reviewers' page (it asks for the reviewer's key and calls the API below)."""
    return FileResponse(STATIC / "review.html", media_type="text/html; charset=utf-8",
                        headers={"Content-Security-Policy": CONTENT_SECURITY_POLICY})


@router.get(PAGE + "/{name}", include_in_schema=False)
def asset(name: str) -> FileResponse:
    """The page's script and style sheet."""
    if name not in _ASSETS:
        raise HTTPException(404, f"no reviewer page asset named {name!r}")
    return FileResponse(STATIC / name, media_type=f"{_ASSETS[name]}; charset=utf-8",
                        headers={"Content-Security-Policy": CONTENT_SECURITY_POLICY})


def _error(request: Request, status: int, message: str, field: str = "") -> JSONResponse:
    response = v1_error(status, message, request.app.state.holder.current.digest, field)
    if status == 401:
        response.headers.update(CHALLENGE)
    return response


def _day(value: Any) -> str | None:
    return value.isoformat() if isinstance(value, (dt.date, dt.datetime)) else None


def _item_view(row: Mapping[str, Any]) -> dict[str, Any]:
    findings, owed = row["findings"] or {}, row["owed"] or []
    owed_ids = {d["id"] for d in owed}
    return {"sequence": row["sequence"], "code": row["code"], "system": row["system"],
            "date_of_service": _day(row["date_of_service"]), "place_of_service": row["place_of_service"],
            "status": row["status"], "review_action": row["review_action"], "revision": row["revision"],
            "decided_by": row["decided_by"], "decided_at": _day(row["decided_at"]),
            "authorization_number": row["authorization_number"], "valid_from": _day(row["valid_from"]),
            "valid_to": _day(row["valid_to"]), "quantity": row["quantity"], "reason": row["reason"],
            "reason_code": row["reason_code"], "policy_url": row["policy_url"],
            "appeal": {"outcome": row["appeal_outcome"], "filed_at": _day(row["appeal_filed_at"]),
                       "decided_at": _day(row["appeal_decided_at"])} if row["appeal_outcome"] else None,
            "documentation_owed": owed,
            "documentation_present": [d for d in findings.get("documentation", []) if d["id"] not in owed_ids],
            "pa_needed": findings.get("pa_needed"), "reasons": findings.get("reasons", []),
            "policies": [{"id": p["id"], "title": p.get("title"), "url": p.get("url")}
                         for p in findings.get("policies", [])]}


def _request_view(row: Mapping[str, Any], now: dt.datetime) -> dict[str, Any]:
    due = _utc(row["due_at"])
    return {"id": row["id"], "payer": row["payer"], "plan": row["plan"], "priority": row["priority"],
            "status": row["status"], "received_at": _day(_utc(row["received_at"])), "due_at": due.isoformat(),
            "seconds_left": int((due - now).total_seconds()), "overdue": row["status"] == PENDED and due < now,
            "extended": row["extended_at"] is not None, "decided_at": _day(row["decided_at"])}


@router.get(API + "/queue", summary="Reviewers: pended PAS requests by due time, the most overdue first")
async def queue(request: Request, limit: int = 100) -> Response:
    """The pended requests by due time with the time left (negative: overdue) and the items pended."""
    try:
        request.app.state.reviewers.who(request)
        now = dt.datetime.now(dt.timezone.utc)
        found = await off_loop(rs.queue, store_of(request), now, max(1, min(limit, 1000)))
        total = await off_loop(rs.pended_count, store_of(request))
    except ReviewerRefused as refused:
        return _error(request, refused.status, refused.message, "Authorization")
    except StoreUnavailable as down:
        return _error(request, 503, str(down))
    return json_response({"now": now.isoformat(), "pended": total, "requests": found},
                         request.app.state.holder.current.digest)


@router.get(API + "/requests/{request_id}", summary="Reviewers: one PAS request with the rules' findings")
async def one(request: Request, request_id: str) -> Response:
    """The request as received (its Bundle), each item's decision and findings (documentation owed
    and present, the policies), and the ClaimResponse ``$inquire`` answers now."""
    try:
        request.app.state.reviewers.who(request)
        row, items = await off_loop(rs.request_rows, store_of(request), request_id)
    except ReviewerRefused as refused:
        return _error(request, refused.status, refused.message, "Authorization")
    except rs.NotFound:
        return _error(request, 404, f"no PAS request {request_id!r}", "request_id")
    except StoreUnavailable as down:
        return _error(request, 503, str(down))
    now = dt.datetime.now(dt.timezone.utc)
    return json_response({**_request_view(row, now), "items": [_item_view(i) for i in items],
                          "request": row["request_bundle"], "response": row["response_bundle"]["entry"][0]["resource"]},
                         request.app.state.holder.current.digest)


def _change(app: Any, decision: Decision, reviewer: str, now: dt.datetime, appeal: bool) -> rs.Change:
    """What a decision (or an appeal's outcome) writes to the item's row, refusing what its state forbids."""
    ruleset = app.state.holder.current

    def change(item: Mapping[str, Any]) -> dict[str, Any]:
        decided = {"decided_by": reviewer, "decided_at": now, "reason": decision.reason,
                   "policy_url": decision.policy_url, "reason_code": decision.reason_code}
        if appeal:
            if item["status"] != DENIED or item["appeal_outcome"] in (APPROVED, UPHELD):
                raise rs.Conflict(f"item {item['sequence']} is {item['status']}"
                                  + (f", its appeal {item['appeal_outcome']}" if item["appeal_outcome"] else "")
                                  + ": only a denied item's open appeal is decided")
            filed = {"appeal_filed_at": item["appeal_filed_at"] or now, "appeal_outcome": decision.action}
            if decision.action == FILED:
                return filed
            filed["appeal_decided_at"] = now
            if decision.action == UPHELD:
                return {**decided, **filed}
            start, end = validity(item["findings"] or {}, ruleset, decision, now.date())
            return {**decided, **filed, "status": CERTIFIED, "review_action": "A1", "reason_code": None,
                    "authorization_number": authorization_number(), "valid_from": start, "valid_to": end}
        if item["status"] != PENDED:
            raise rs.Conflict(f"item {item['sequence']} is already {item['status']} (by {item['decided_by']}): "
                              "only a pended item is decided; a denial is appealed")
        values = {**decided, "status": STATUS[decision.action], "review_action": REVIEW_ACTION[decision.action],
                  "quantity": decision.quantity}
        if STATUS[decision.action] in (CERTIFIED, MODIFIED):
            start, end = validity(item["findings"] or {}, ruleset, decision, now.date())
            values.update(authorization_number=authorization_number(), valid_from=start, valid_to=end)
        return values
    return change


def _decide(app: Any, request_id: str, sequence: int, decision: Decision, reviewer: str,
            appeal: bool) -> tuple[rs.Outcome, Reviewed, list[str]]:
    now = dt.datetime.now(dt.timezone.utc)
    held: dict[str, Any] = {}

    def rebuild(row: Mapping[str, Any], items: list[dict[str, Any]], reviewed: set[int]) -> dict[str, Any]:
        held["pa"] = pa = read_request(row["request_bundle"], app.state.payers)
        return rebuilt(pa, request_id, items, row["response_bundle"], now, reviewed)

    outcome = rs.decide(app.state.pas_store, request_id, sequence, decision.revision,
                        _change(app, decision, reviewer, now, appeal), rebuild, now,
                        EXTENSION if decision.extend else None)
    pa, item = held["pa"], outcome.item
    audited = Reviewed(next(i for i in pa.items if i.sequence == sequence), item["status"], [],
                       authorization=item["authorization_number"], action=item["review_action"])
    return outcome, audited, submitter_ids(pa)


async def _decision(request: Request, background: BackgroundTasks, request_id: str, sequence: int,
                    appeal: bool) -> Response:
    app, digest = request.app, request.app.state.holder.current.digest
    operation = "review-appeal" if appeal else "review-decision"
    try:
        reviewer = app.state.reviewers.who(request)
        request.state.caller = Caller("reviewer", reviewer)
        decision = read_decision(parse_json(await request.body()), appeal)
        outcome, audited, submitter = await off_loop(_decide, app, request_id, sequence, decision, reviewer, appeal)
    except ReviewerRefused as refused:
        return _error(request, refused.status, refused.message, "Authorization")
    except BadDecision as bad:
        return _error(request, 400, bad.message, bad.field)
    except ValueError as bad:  # malformed JSON (service/v1.py BodyError)
        return _error(request, 400, f"malformed JSON: {bad}")
    except rs.NotFound:
        return _error(request, 404, f"no PAS request {request_id!r} with an item {sequence}", "request_id")
    except rs.Conflict as conflict:
        return _error(request, 409, str(conflict), "revision")
    except StoreUnavailable as down:
        return _error(request, 503, str(down))
    if app.state.audit.withheld(app.state.audit.pas(request, digest, 200, f"{operation}-{decision.action}",
                                                    request_id, [audited])):
        return _error(request, 503, UNAUDITED)
    background.add_task(notify_decision, app.state.pas_notifier, outcome.bundle, submitter)
    now = dt.datetime.now(dt.timezone.utc)
    return json_response({"request": _request_view(outcome.request, now), "item": _item_view(outcome.item),
                          "response": outcome.bundle["entry"][0]["resource"]}, digest)


@router.post(API + "/requests/{request_id}/items/{sequence}/decision",
             summary="Reviewers: certify, modify, deny or pend further one item of a pended PAS request")
async def decide(request: Request, background: BackgroundTasks, request_id: str, sequence: int) -> Response:
    """``{"action": "certify"|"modify"|"deny"|"pend", "revision": N, ...}``: 200 with the item and the
    ClaimResponse now answered; 400 naming a bad field; 409 when another reviewer decided first."""
    return await _decision(request, background, request_id, sequence, appeal=False)


@router.post(API + "/requests/{request_id}/items/{sequence}/appeal",
             summary="Reviewers: record an appeal of a denied item and its outcome")
async def appeal(request: Request, background: BackgroundTasks, request_id: str, sequence: int) -> Response:
    """``{"outcome": "filed"|"approved"|"upheld", "revision": N, ...}``: approved after appeal certifies
    the item (an authorization on file); upheld keeps the denial, with its reason and policy."""
    return await _decision(request, background, request_id, sequence, appeal=True)
