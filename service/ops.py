"""Operations endpoints: liveness, readiness and the admin reload trigger."""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from service.bearer import token_refusal
from service.holder import ReloadFailure
from service.responses import json_response, v1_error

router = APIRouter(tags=["operations"])
#: The liveness probe's path: answered even on a connection past the cap (service/protocol.py).
LIVENESS = "/healthz"
#: The 403 of an admin operation while no admin token is configured.
ADMIN_OFF = ("admin operations are refused until an admin token is configured: set COVREQ_ADMIN_TOKEN "
             "and send Authorization: Bearer <token> (SIGHUP to the covreq serve process reloads without one)")
#: The probes an orchestrator polls: never rate limited, never traced.
PROBES = frozenset({LIVENESS, "/readyz"})


@router.get(LIVENESS, summary="Liveness: the process answers")
def healthz(request: Request) -> JSONResponse:
    """Always 200 while the process serves requests."""
    digest = request.app.state.holder.current.digest
    return json_response({"status": "ok", "ruleset": digest}, digest)


@router.get("/readyz", summary="Readiness: a rule set is loaded; reports a refused reload")
def readyz(request: Request) -> JSONResponse:
    """200 ``ready``, or 200 ``degraded`` with the places and codes of the problems when the last
    reload was refused (never their messages: this endpoint is open, and messages quote rule files);
    served from a bundle URL, also the bundle in service (its full SHA-256 digest) and the last check;
    when the payer mapping lets names match payers (``match_by_name``), ``payers`` says so.

    A refused reload does not make the service unready: it keeps answering with the last good
    rule set, and taking every replica out of rotation for a bad file would be an outage. When the
    last audit record could not be written the status is ``degraded`` too, or, under strict audit
    (which withholds answers then), 503 ``unready``.
    """
    holder, bundles, audit = request.app.state.holder, request.app.state.bundles, request.app.state.audit
    digest, failure = holder.current.digest, holder.last_error
    status = "unready" if audit.failing and audit.strict else "degraded" if failure or audit.failing else "ready"
    body: dict[str, object] = {"status": status, "ruleset": digest,
                               "last_reload_error": failure.as_dict(messages=False) if failure else None}
    if audit.failing:
        body["audit"] = {"failing": True, "failures": audit.failures}
    if bundles:
        body["bundle"] = bundles.status()
    if request.app.state.payers.match_by_name:  # an operator's opt-in, shown where it is checked
        body["payers"] = {"match_by_name": True}
    return json_response(body, digest, 503 if status == "unready" else 200)


def reload_rules(state: Any) -> ReloadFailure | None:
    """Reload the rules of the application whose ``state`` is given: from a bundle URL, the bundle
    fetched again and verified (its unpacked folder is never read unchecked), else the rule tree."""
    bundles = state.bundles
    return bundles.reload(state.holder) if bundles else state.holder.reload()


@router.post("/admin/reload", summary="Reload the rule tree (or fetch the bundle again); a broken one is refused (422)")
def reload(request: Request) -> JSONResponse:
    """Reload now. 200 with the new digest, or 422 with the problems and the digest kept; 403 while
    no admin token is configured (``COVREQ_ADMIN_TOKEN``), 401 without that token."""
    holder = request.app.state.holder
    token = request.app.state.settings.admin_token
    if not token:
        return v1_error(403, ADMIN_OFF, holder.current.digest, "Authorization")
    refused = token_refusal(request, token, "COVREQ_ADMIN_TOKEN")
    if refused:
        return refused
    failure = reload_rules(request.app.state)
    digest = holder.current.digest
    if failure:
        return json_response({"reloaded": False, "ruleset": digest, "error": failure.as_dict()},
                             digest, 422)
    return json_response({"reloaded": True, "ruleset": digest}, digest)
