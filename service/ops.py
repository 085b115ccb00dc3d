"""Operations endpoints: liveness, readiness and the admin reload trigger."""
from __future__ import annotations

import hmac

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from service.responses import json_response, v1_error

router = APIRouter(tags=["operations"])
#: The liveness probe's path: answered even on a connection past the cap (service/protocol.py).
LIVENESS = "/healthz"



@router.get(LIVENESS, summary="Liveness: the process answers")
def healthz(request: Request) -> JSONResponse:
    """Always 200 while the process serves requests."""
    digest = request.app.state.holder.current.digest
    return json_response({"status": "ok", "ruleset": digest}, digest)


@router.get("/readyz", summary="Readiness: a rule set is loaded; reports a refused reload")
def readyz(request: Request) -> JSONResponse:
    """200 ``ready``, or 200 ``degraded`` with the places and codes of the problems when the last
    reload was refused (never their messages: this endpoint is open, and messages quote rule files);
    served from a bundle URL, also the bundle in service (its full SHA-256 digest) and the last check.

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
    return json_response(body, digest, 503 if status == "unready" else 200)


@router.post("/admin/reload", summary="Reload the rule tree; a broken tree is refused (422)")
def reload(request: Request) -> JSONResponse:
    """Reload now. 200 with the new digest, or 422 with the problems and the digest kept."""
    holder = request.app.state.holder
    token = request.app.state.settings.admin_token
    offered = request.headers.get("authorization", "")
    if token and not hmac.compare_digest(offered.encode(), f"Bearer {token}".encode()):
        return v1_error(401, "admin token missing or wrong", holder.current.digest, "Authorization")
    failure = holder.reload()
    digest = holder.current.digest
    if failure:
        return json_response({"reloaded": False, "ruleset": digest, "error": failure.as_dict()},
                             digest, 422)
    return json_response({"reloaded": True, "ruleset": digest}, digest)
