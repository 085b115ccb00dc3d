"""JSON responses that carry the digest of the rule set that produced them."""
from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse

RULESET_HEADER = "X-Covreq-Ruleset"


def json_response(body: Any, digest: str, status: int = 200,
                  headers: dict[str, str] | None = None) -> JSONResponse:
    """``body`` as JSON with the ``X-Covreq-Ruleset`` header set to ``digest``."""
    return JSONResponse(body, status_code=status, headers={RULESET_HEADER: digest, **(headers or {})})


def v1_error(status: int, message: str, digest: str, location: str = "") -> JSONResponse:
    """The v1 error shape: ``{"ruleset", "error": {"status", "message", "location"}}``."""
    return json_response({"ruleset": digest,
                          "error": {"status": status, "message": message, "location": location}},
                         digest, status)
