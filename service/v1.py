"""The v1 JSON API: requirements, policies and the loaded rule set (docs/api.md)."""
from __future__ import annotations

import json
import re

import orjson
from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response

import engine
from service.dtr.catalogue import forms_of
from service.logs import caller_text
from service.metrics import answered
from service.pas.onfile import member_of_v1, with_on_file
from service.responses import UNAUDITED, json_response, render_json, rendered_response, too_large, v1_error

router = APIRouter(tags=["v1"])

_EXAMPLE_REQUEST = {
    "payer": "medicare", "plan": "original-medicare-ffs", "date_of_service": "2023-03-14",
    "place_of_service": "22", "diagnoses": ["H02.831"],
    "services": [{"code": "15823", "system": "CPT", "units": 1}],
}
_REQUEST_DOC = {"requestBody": {"required": True, "content": {"application/json": {
    "schema": {"type": "object", "required": ["payer", "services"],
               "description": "The v1 request (docs/api.md, POST /v1/requirements); every fact but payer and "
                              "services may be absent (unknown).",
               "properties": {
                   "order_complete": {
                       "type": "boolean", "default": False,
                       "description": "true when services is the whole order; otherwise a line whose paired "
                                      "partner code is not sent may answer conditional on other_codes"},
                   "explain": {"type": "boolean", "default": False,
                               "description": "add a trace of the rules tried"}}},
    "example": _EXAMPLE_REQUEST}}}}

#: A JSON escape of a UTF-16 surrogate: only these can put a lone surrogate into a parsed string.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")
#: Bytes with every digit written 9 and everything else a blank: a body holding nineteen 9s in a row
#: may hold an integer orjson would read as a float (beyond 64 bits), and is read by the standard library.
_DIGITS_ONLY = bytes(0x39 if 0x30 <= b <= 0x39 else 0x20 for b in range(256))
_LONG_DIGITS = b"9" * 19
#: Characters of a field name quoted in an error.
_NAME_QUOTED = 64


class BodyError(ValueError):
    """A body covreq cannot read as JSON text; ``location`` names the field at fault, if any."""

    def __init__(self, message: str, location: str = "") -> None:
        super().__init__(message)
        self.location = location


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


def _field(path: list[object]) -> str:
    """``["services", 0, "code"]`` -> ``services[0].code`` (names cut and escaped for echoing)."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            name = str(part)[:_NAME_QUOTED].encode("utf-8", "backslashreplace").decode("ascii", "backslashreplace")
            text += f".{name}" if text else name
    return text or "(top level)"


def _lone_surrogate_at(value: Any) -> tuple[str, str] | None:
    """The first field (in document order) whose name or text holds a lone UTF-16 surrogate,
    with which of the two it is."""
    pending: list[tuple[list[object], Any]] = [([], value)]
    while pending:
        path, item = pending.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                return _field(path), "text"
        elif isinstance(item, dict):
            for key in item:
                if _SURROGATE.search(key):
                    return _field([*path, key]), "name"
            pending.extend(([*path, key], child) for key, child in reversed(item.items()))
        elif isinstance(item, list):
            pending.extend(([*path, i], child) for i, child in reversed(list(enumerate(item))))
    return None


def parse_json(raw: bytes) -> Any:
    """Strict JSON (no NaN/Infinity) of Unicode text; raises ``BodyError`` (a ValueError) with the
    position of the problem, or the field whose text holds a lone surrogate such as ``"\\ud800"``.

    orjson reads the body; a body it refuses, or one with integers longer than it keeps exactly,
    is read again by the standard library, whose messages locate the problem."""
    try:
        body = _standard_json(raw) if _LONG_DIGITS in raw.translate(_DIGITS_ONLY) else orjson.loads(raw)
    except orjson.JSONDecodeError:
        body = _standard_json(raw)
    if _SURROGATE_ESCAPE.search(raw):  # rare: only then walk the body
        found = _lone_surrogate_at(body)
        if found is not None:
            field, part = found
            raise BodyError(f"the {part} of {field} holds a lone UTF-16 surrogate (\\ud800-\\udfff), "
                            "which is not Unicode text", field)
    return body


def _standard_json(raw: bytes) -> Any:
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant)
    except RecursionError:  # e.g. a body of a million '[': a 400, not a crash
        raise BodyError("the JSON nests too deeply") from None
    except ValueError as err:
        raise BodyError(str(err)) from None


@router.post("/v1/requirements", openapi_extra=_REQUEST_DOC,
             summary="Prior-authorization and documentation requirements, one decision per service")
async def requirements(request: Request) -> Response:
    """Evaluate a v1 request against the current rule set (400 malformed JSON, 422 contract).

    The same body (byte for byte) on the same day is answered from the rule set's answer cache.
    Every call leaves one audit record (service/audit.py)."""
    ruleset, audit = request.app.state.holder.current, request.app.state.audit
    raw = await request.body()
    try:
        body = parse_json(raw)
    except BodyError as err:
        audit.v1(request, ruleset.digest, 400, location=err.location)
        return v1_error(400, f"malformed JSON: {err}", ruleset.digest, err.location)
    if not isinstance(body, dict):
        audit.v1(request, ruleset.digest, 422)
        return v1_error(422, "the request must be a JSON object", ruleset.digest)
    member = member_of_v1(body)
    if member is not None:  # authorizations on file may have changed since the cache was filled
        body = await run_in_threadpool(with_on_file, request.app.state.pas_store, body, member)
    try:
        answer = forms_of(request).link(ruleset.evaluate(body, remember=raw if member is None else None))
    except engine.RequestError as err:
        audit.v1(request, ruleset.digest, 422, location=err.location)
        return v1_error(422, err.message, ruleset.digest, err.location)
    rendered = render_json(answer)
    refusal = too_large(rendered, request.app.state.settings.max_response_bytes)
    if refusal:
        audit.v1(request, ruleset.digest, 413)
        return v1_error(413, refusal, ruleset.digest)
    if audit.withheld(audit.v1(request, ruleset.digest, 200, answer)):
        return v1_error(503, UNAUDITED, ruleset.digest)
    answered(request, "v1", (d["pa_needed"] for d in answer["decisions"]))
    return rendered_response(rendered, ruleset.digest)


@router.get("/v1/policies", summary="Every policy of the loaded rule set")
def policies(request: Request) -> JSONResponse:
    """Policy metadata with versions and source links."""
    ruleset = request.app.state.holder.current
    return json_response({"ruleset": ruleset.digest, "policies": ruleset.policies()}, ruleset.digest)


@router.get("/v1/policies/{policy_id}", summary="One policy: metadata, versions, source links")
def policy(policy_id: str, request: Request) -> JSONResponse:
    """One policy by id; 404 when the rule set has none by that id."""
    ruleset = request.app.state.holder.current
    found = ruleset.policy(policy_id)
    if found is None:
        return v1_error(404, f"no policy with id {caller_text(policy_id)!r}", ruleset.digest, "id")
    return json_response({"ruleset": ruleset.digest, "policy": found}, ruleset.digest)


@router.get("/v1/ruleset", summary="The loaded rule set: digest, load time, size, last reload error")
def ruleset_info(request: Request) -> JSONResponse:
    """What is loaded, from where, and why the last reload was refused if it was."""
    holder = request.app.state.holder
    ruleset, failure = holder.current, holder.last_error
    return json_response({
        "ruleset": ruleset.digest,
        "source": ruleset.source,
        "loaded_at": ruleset.loaded_at.isoformat(timespec="seconds"),
        "policies": ruleset.policy_count(),
        "payers": ruleset.payers(),
        "last_reload_error": failure.as_dict() if failure else None,
    }, ruleset.digest)
