"""The SMART endpoints under ``/fhir``: the discovery document and the token endpoint, both open."""
from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from service.fhir.outcome import operation_outcome
from service.smart import DISCOVERY_PATH, TOKEN_PATH
from service.smart.authority import Authority, form_of
from service.smart.clients import ALGORITHMS
from service.smart.oauth import NO_STORE, OAuthError
from service.smart.security import token_url

log = logging.getLogger("covreq.smart")

CAPABILITIES = ["client-confidential-asymmetric", "permission-v1", "permission-v2"]
router = APIRouter(tags=["FHIR: SMART Backend Services"])


def _authority(request: Request) -> Authority | None:
    return getattr(request.app.state, "smart", None)


def _off(request: Request) -> JSONResponse:
    return operation_outcome(404, "SMART Backend Services is not configured on this server (COVREQ_SMART_CLIENTS)",
                             request.app.state.holder.current.digest)


@router.get(DISCOVERY_PATH, summary="SMART configuration (discovery of the token endpoint)")
def smart_configuration(request: Request) -> JSONResponse:
    """What a SMART Backend Services client needs to ask for a token; 404 while SMART is off."""
    authority = _authority(request)
    if authority is None:
        return _off(request)
    return JSONResponse({
        "token_endpoint": token_url(request),
        "token_endpoint_auth_methods_supported": ["private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": list(ALGORITHMS),
        "grant_types_supported": ["client_credentials"],
        "scopes_supported": authority.scopes_supported,
        "capabilities": CAPABILITIES,
    })


@router.post(TOKEN_PATH, summary="OAuth 2.0 token endpoint (client_credentials, private_key_jwt)")
async def token(request: Request) -> JSONResponse:
    """An access token, or an OAuth 2.0 error (RFC 6749 5.2)."""
    authority = _authority(request)
    if authority is None:
        return _off(request)
    try:
        form = form_of(request.headers.get("content-type", ""), await request.body())
        answer = await authority.token(form, token_url(request))
    except OAuthError as err:
        log.warning("token request refused: %s", err.description,
                    extra={"event": "smart-token-refused", "error": err.error, "reason": err.description})
        return err.response()
    return JSONResponse(answer, headers=NO_STORE)

