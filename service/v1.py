"""The v1 JSON API: requirements, policies and the loaded rule set (DESIGN.md section 6)."""
from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

import engine
from service.dtr.catalogue import forms_of
from service.responses import json_response, v1_error

router = APIRouter(tags=["v1"])

_EXAMPLE_REQUEST = {
    "payer": "medicare", "plan": "original-medicare-ffs", "date_of_service": "2023-03-14",
    "place_of_service": "22", "diagnoses": ["H02.831"],
    "services": [{"code": "15823", "system": "CPT", "units": 1}],
}
_REQUEST_DOC = {"requestBody": {"required": True, "content": {"application/json": {
    "schema": {"type": "object", "required": ["payer", "services"],
               "description": "The v1 request of DESIGN.md section 6; every fact but payer and "
                              "services may be absent (unknown)."},
    "example": _EXAMPLE_REQUEST}}}}



def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


def parse_json(raw: bytes) -> Any:
    """Strict JSON (no NaN/Infinity); raises ValueError with the position of the problem."""
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant)
    except RecursionError:  # e.g. a body of a million '[': a 400, not a crash
        raise ValueError("the JSON nests too deeply") from None


@router.post("/v1/requirements", openapi_extra=_REQUEST_DOC,
             summary="Prior-authorization and documentation requirements, one decision per service")
async def requirements(request: Request) -> JSONResponse:
    """Evaluate a v1 request against the current rule set (400 malformed JSON, 422 contract).

    Every call leaves one audit record (service/audit.py)."""
    ruleset, audit = request.app.state.holder.current, request.app.state.audit
    try:
        body = parse_json(await request.body())
    except ValueError as err:
        audit.v1(request, ruleset.digest, 400)
        return v1_error(400, f"malformed JSON: {err}", ruleset.digest)
    if not isinstance(body, dict):
        audit.v1(request, ruleset.digest, 422)
        return v1_error(422, "the request must be a JSON object", ruleset.digest)
    try:
        answer = forms_of(request).link(ruleset.evaluate(body))
    except engine.RequestError as err:
        audit.v1(request, ruleset.digest, 422, location=err.location)
        return v1_error(422, err.message, ruleset.digest, err.location)
    audit.v1(request, ruleset.digest, 200, answer)
    return json_response(answer, ruleset.digest)


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
        return v1_error(404, f"no policy with id {policy_id!r}", ruleset.digest, "id")
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
