"""The CDS Hooks envelope of a call: hook, instance, context, prefetch, FHIR server access, options.

Only the shape CDS Hooks 2.0 gives the request is read here; what the FHIR inside says is read by
service/crd/requests.py. Every problem is a CrdError naming the offending place.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from service.crd.discovery import Configuration
from service.crd.outcome import CrdError


@dataclass(frozen=True)
class EhrAccess:
    """The EHR's FHIR server and the bearer token the hook call granted for it."""

    fhir_server: str
    access_token: str


@dataclass(frozen=True)
class Envelope:
    """A hook call before its FHIR is read."""

    hook: str
    hook_instance: str
    context: dict[str, Any]
    configuration: Configuration
    prefetch: dict[str, Any]
    ehr: EhrAccess | None


def require(value: Any, kind: type, expression: str, what: str) -> Any:
    """``value`` when it is a non-empty ``kind``; else CrdError 400 naming ``expression``."""
    if not isinstance(value, kind) or value in ("", [], {}):
        raise CrdError(400, f"{expression} is required and must be {what}", expression)
    return value


def read_envelope(body: Any, hook: str) -> Envelope:
    """Check a hook request's envelope; raises CrdError 400 with the offending field."""
    require(body, dict, "request", "a JSON object")
    if body.get("hook") != hook:
        raise CrdError(400, f"hook must be {hook!r} for this service, got {body.get('hook')!r}", "hook")
    hook_instance = require(body.get("hookInstance"), str, "hookInstance", "a string")
    context = require(body.get("context"), dict, "context", "a JSON object")
    require(context.get("patientId"), str, "context.patientId", "a string")
    configuration = Configuration.from_request(body.get("extension"))
    prefetch = body.get("prefetch")
    if prefetch is not None and not isinstance(prefetch, dict):
        raise CrdError(400, "prefetch must be a JSON object", "prefetch")
    return Envelope(hook, hook_instance, context, configuration, prefetch or {}, _ehr_access(body))


def _ehr_access(body: dict[str, Any]) -> EhrAccess | None:
    """``fhirServer`` with ``fhirAuthorization``'s bearer token; None when the call grants none."""
    server, authorization = body.get("fhirServer"), body.get("fhirAuthorization")
    if server is not None:
        parts = urlsplit(server) if isinstance(server, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
            raise CrdError(400, "fhirServer must be the absolute http(s) base URL of the EHR's FHIR "
                                "server", "fhirServer")
    if authorization is None:  # CDS Hooks forbids null; read it as absent, as the RI sends it
        return None
    require(authorization, dict, "fhirAuthorization", "a JSON object")
    token = require(authorization.get("access_token"), str, "fhirAuthorization.access_token", "a string")
    token_type = authorization.get("token_type")
    if not isinstance(token_type, str) or token_type.lower() != "bearer":
        raise CrdError(400, "fhirAuthorization.token_type must be 'Bearer'", "fhirAuthorization.token_type")
    if server is None:
        raise CrdError(400, "fhirServer is required when fhirAuthorization is given", "fhirServer")
    return EhrAccess(server.rstrip("/"), token)
