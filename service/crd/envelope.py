"""The CDS Hooks envelope of a call: hook, instance, context, prefetch, FHIR server access, options.

Only the shape CDS Hooks 2.0 gives the request is read here; what the FHIR inside says is read by
service/crd/requests.py. Every problem is a FhirError naming the offending place.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Mapping
from urllib.parse import urlsplit

from service.crd.discovery import DEFAULT_VERSION, HOOKS, Configuration
from service.fhir.outcome import FhirError
from service.fhir import r4
from service.fhir.index import ResourceIndex
from service.fhir.values import as_list, member

#: an OAuth 2.0 access token's characters (RFC 6749, appendix A.12)
_VSCHARS = re.compile(r"[\x20-\x7e]+")


@dataclass(frozen=True)
class EhrAccess:
    """The EHR's FHIR server and the bearer token the hook call granted for it."""

    fhir_server: str
    access_token: str


@dataclass(frozen=True)
class Limits:
    """The most one call may ask of covreq (413 above): orders, Coverages, billing codes per order,
    and billing codes of all its orders together (``lines``: each is a decision in the answer and
    the audit record)."""

    orders: int = 100
    coverages: int = 20
    billing_codes: int = 50
    lines: int = 1000


@dataclass(frozen=True)
class Envelope:
    """A hook call before its FHIR is read."""

    hook: str
    hook_instance: str
    context: dict[str, Any]
    configuration: Configuration
    prefetch: dict[str, Any]
    ehr: EhrAccess | None
    limits: Limits = Limits()
    fhir_server: str = ""  # the EHR's FHIR base as the call names it (``fhirServer``), "" when it does not
    #: the orders (by entry number in the context's Bundle) that are not valid R4, with how not
    invalid_orders: Mapping[int, tuple[r4.Problem, ...]] = field(default_factory=dict)

    def require_valid_orders(self) -> None:
        """FhirError 400 naming the first problem when an order is not valid R4, for a reader that
        answers for every order or none (DTR ``$questionnaire-package``)."""
        if self.invalid_orders:
            found = [p for number in sorted(self.invalid_orders) for p in self.invalid_orders[number]]
            raise FhirError(400, f"context.{HOOKS[self.hook]} is {r4.describe(found)}", found[0].path)


def require(value: Any, kind: type, expression: str, what: str) -> Any:
    """``value`` when it is a non-empty ``kind``; else FhirError 400 naming ``expression``."""
    if not isinstance(value, kind) or value in ("", [], {}):
        raise FhirError(400, f"{expression} is required and must be {what}", expression)
    return value


def read_envelope(body: Any, hook: str, limits: Limits = Limits(),
                  default_version: str = DEFAULT_VERSION) -> Envelope:
    """Check a hook request's envelope and that its resources are FHIR R4; raises FhirError 400
    with the offending field, 413 when it asks for more work than ``limits`` allow. A call that
    asks for no CRD version is answered in ``default_version``."""
    require(body, dict, "request", "a JSON object")
    if body.get("hook") != hook:
        raise FhirError(400, f"hook must be {hook!r} for this service, got {body.get('hook')!r}", "hook")
    hook_instance = require(body.get("hookInstance"), str, "hookInstance", "a string")
    context = require(body.get("context"), dict, "context", "a JSON object")
    require(context.get("patientId"), str, "context.patientId", "a string")
    configuration = Configuration.from_request(body.get("extension"), default_version)
    prefetch = body.get("prefetch")
    if prefetch is not None and not isinstance(prefetch, dict):
        raise FhirError(400, "prefetch must be a JSON object", "prefetch")
    ehr = _ehr_access(body)
    server = body["fhirServer"].rstrip("/") if isinstance(body.get("fhirServer"), str) else ""
    if not configuration.coverage_info:  # nothing will be answered, so nothing more is read
        return Envelope(hook, hook_instance, context, configuration, {}, ehr, limits, server)
    orders = context.get(HOOKS[hook])
    _check_size(orders, prefetch or {}, limits, f"context.{HOOKS[hook]}")
    invalid = _order_problems(orders, f"context.{HOOKS[hook]}") if isinstance(orders, dict) else {}
    filled = {}
    for key, value in (prefetch or {}).items():
        if value is None:  # CDS Hooks 2.0: the EHR looked and found nothing, an empty result
            filled[key] = {"resourceType": "Bundle", "type": "searchset", "total": 0}
            continue
        if member(value, "resourceType") == "OperationOutcome":
            continue  # the EHR could not fill this template: as if absent
        if not isinstance(value, dict):
            raise FhirError(400, f"prefetch.{key} must be a FHIR resource", f"prefetch.{key}")
        _check_r4(value, f"prefetch.{key}")
        filled[key] = value
    return Envelope(hook, hook_instance, context, configuration, filled, ehr, limits, server, invalid)


def _order_problems(orders: dict[str, Any], where: str) -> dict[int, tuple[r4.Problem, ...]]:
    """The R4 problems of each order of a Bundle of orders, by entry number: such an order is
    answered alone, as indeterminate (service/crd/requests.py), and the others still are. A problem
    outside an order's elements (the Bundle's own, an entry's, a resource that is no R4 resource at
    all) leaves nothing to read: FhirError 400 naming its path."""
    found = r4.problems(orders, where)
    inside = re.compile(re.escape(where) + r"\.entry\[(\d+)\]\.resource[.\[]")
    by_entry: dict[int, list[r4.Problem]] = {}
    for problem in found:
        match = inside.match(problem.path)
        if match is None:
            raise FhirError(400, f"{where} is {r4.describe(found)}", problem.path)
        by_entry.setdefault(int(match[1]), []).append(problem)
    return {number: tuple(problems) for number, problems in by_entry.items()}


def _check_size(orders: Any, prefetch: dict[str, Any], limits: Limits, where: str) -> None:
    """413 before any FHIR is parsed when the call names more orders or Coverages than allowed."""
    count = len(as_list(member(orders, "entry"))) if isinstance(orders, dict) else len(as_list(orders))
    if count > limits.orders:
        raise FhirError(413, f"{where} carries {count} orders; this service answers at most "
                            f"{limits.orders} per call (COVREQ_CRD_MAX_ORDERS)", where)
    coverages = sum(1 for value in prefetch.values() for resource in ResourceIndex.flatten(value)
                    if resource["resourceType"] == "Coverage")
    if coverages > limits.coverages:
        raise FhirError(413, f"the prefetch carries {coverages} Coverages; this service reads at most "
                            f"{limits.coverages} per call (COVREQ_CRD_MAX_COVERAGES)", "prefetch")


def _check_r4(resource: dict[str, Any], where: str) -> None:
    """400 naming the first offending path when ``resource`` is not FHIR R4 (CRD hook-13)."""
    found = r4.problems(resource, where)
    if found:
        raise FhirError(400, f"{where} is {r4.describe(found)}", found[0].path)


def _ehr_access(body: dict[str, Any]) -> EhrAccess | None:
    """``fhirServer`` with ``fhirAuthorization``'s bearer token; None when the call grants none."""
    server, authorization = body.get("fhirServer"), body.get("fhirAuthorization")
    if server is not None:
        parts = urlsplit(server) if isinstance(server, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
            raise FhirError(400, "fhirServer must be the absolute http(s) base URL of the EHR's FHIR "
                                "server", "fhirServer")
    if authorization is None:  # CDS Hooks forbids null; read it as absent, as the RI sends it
        return None
    require(authorization, dict, "fhirAuthorization", "a JSON object")
    token = require(authorization.get("access_token"), str, "fhirAuthorization.access_token", "a string")
    if not _VSCHARS.fullmatch(token):  # sent as an HTTP header, which holds ASCII only
        raise FhirError(400, "fhirAuthorization.access_token must be printable ASCII (RFC 6749 access_token: "
                             "VSCHAR, 0x20-0x7E)", "fhirAuthorization.access_token")
    token_type = authorization.get("token_type")
    if not isinstance(token_type, str) or token_type.lower() != "bearer":
        raise FhirError(400, "fhirAuthorization.token_type must be 'Bearer'", "fhirAuthorization.token_type")
    if server is None:
        raise FhirError(400, "fhirServer is required when fhirAuthorization is given", "fhirServer")
    return EhrAccess(server.rstrip("/"), token)
