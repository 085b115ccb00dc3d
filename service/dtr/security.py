"""``rest.security`` of the ``/fhir`` CapabilityStatement: how a DTR client authenticates today.

One function per scheme keeps this easy to extend: SMART Backend Services (another part of issue
23) adds its ``service`` coding and ``oauth-uris`` extension here beside the JWT scheme.
"""
from __future__ import annotations

from typing import Any

from service.settings import Settings

_JWT = ("Every request but GET /fhir/metadata needs 'Authorization: Bearer <JWT>': a JWT the client signs "
        "with its own private key (RS*, PS*, ES* or EdDSA; no shared secrets), whose iss is a trusted issuer "
        "of COVREQ_AUTH_ISSUERS, whose aud is the service URL, valid at most 5 minutes, with a jti never "
        "used before: the scheme of covreq's CDS Hooks endpoints (docs/operations.md).")
_OPEN = ("covreq authenticates no caller on /fhir in this deployment (COVREQ_AUTH_ISSUERS is not set): the "
         "operator secures it in front of covreq (a gateway or mutual TLS), as the HRex security "
         "requirements the DTR payer service names ask.")


def security_of(settings: Settings) -> dict[str, Any]:
    """``CapabilityStatement.rest.security`` for the authentication ``settings`` turn on."""
    signed_jwts = settings.auth_issuers is not None and bool(settings.service_url)
    return {"cors": False, "description": _JWT if signed_jwts else _OPEN}
