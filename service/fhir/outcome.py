"""Errors of the FHIR-speaking endpoints (CDS Hooks / CRD, DTR), answered as OperationOutcome resources."""
from __future__ import annotations

from fastapi.responses import JSONResponse

from service.responses import json_response

RULESET_TAG_SYSTEM = "urn:covreq:ruleset"
_ISSUE_CODES = {400: "invalid", 401: "login", 403: "forbidden", 404: "not-found", 412: "incomplete", 413: "too-costly",
                422: "processing", 429: "throttled", 503: "transient"}


class FhirError(Exception):
    """A CDS Hooks or FHIR request covreq cannot answer: HTTP status, message, FHIRPath-like location."""

    def __init__(self, status: int, message: str, expression: str = "") -> None:
        super().__init__(message)
        self.status, self.message, self.expression = status, message, expression


def operation_outcome(status: int, message: str, digest: str, expression: str = "") -> JSONResponse:
    """An OperationOutcome with one error issue; the rule-set digest rides in ``meta.tag``."""
    issue: dict[str, object] = {"severity": "error", "code": _ISSUE_CODES.get(status, "exception"),
                                "diagnostics": message}
    if expression:
        issue["expression"] = [expression]
    body = {"resourceType": "OperationOutcome",
            "meta": {"tag": [{"system": RULESET_TAG_SYSTEM, "code": digest}]},
            "issue": [issue]}
    return json_response(body, digest, status, headers={"Content-Type": "application/fhir+json"})
