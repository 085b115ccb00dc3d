"""The SMART part of the CapabilityStatement's ``rest.security``, and the token endpoint's URL both
it and the discovery document name."""
from __future__ import annotations

from typing import Any

from fastapi import Request

from service.dtr.catalogue import PREFIX, fhir_base
from service.smart import TOKEN_PATH

OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
SECURITY_SERVICE = "http://terminology.hl7.org/CodeSystem/restful-security-service"


def token_url(request: Request) -> str:
    """The token endpoint's public URL (under the public ``/fhir`` base): the ``aud`` a client
    assertion must name."""
    return fhir_base(request) + TOKEN_PATH[len(PREFIX):]


def smart_security(rest: dict[str, Any], request: Request) -> None:
    """Add SMART Backend Services to ``rest.security`` of the CapabilityStatement (the oauth-uris
    extension with the token endpoint, the SMART-on-FHIR service) when it is on."""
    if getattr(request.app.state, "smart", None) is None:
        return
    security = rest.setdefault("security", {})
    security.setdefault("extension", []).append(
        {"url": OAUTH_URIS, "extension": [{"url": "token", "valueUri": token_url(request)}]})
    security.setdefault("service", []).append(
        {"coding": [{"system": SECURITY_SERVICE, "code": "SMART-on-FHIR"}],
         "text": "SMART Backend Services: client_credentials with private_key_jwt, system scopes"})
