"""JSON responses that carry the digest of the rule set that produced them."""
from __future__ import annotations

import json
from typing import Any

import orjson
from fastapi.responses import JSONResponse, Response

RULESET_HEADER = "X-Covreq-Ruleset"
#: The message of a decision withheld (503) because its audit record could not be written.
UNAUDITED = "the audit record of this call could not be written, so no answer is given (strict audit)"


class FastJSONResponse(JSONResponse):
    """JSON written by orjson: the same bytes as :class:`JSONResponse` (compact UTF-8; a float in
    its shortest spelling, ``1e-7`` for ``1e-07``), several times faster; a body orjson refuses
    (e.g. non-string keys) is written by the standard library."""

    def render(self, content: Any) -> bytes:
        return render_json(content)


def render_json(content: Any) -> bytes:
    """``content`` as :class:`FastJSONResponse` writes it: by orjson, or, for what orjson refuses
    (integers beyond 64 bits, non-string keys), by the standard library as JSONResponse does."""
    try:
        return orjson.dumps(content)
    except orjson.JSONEncodeError:
        return json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8")


def json_response(body: Any, digest: str, status: int = 200,
                  headers: dict[str, str] | None = None) -> JSONResponse:
    """``body`` as JSON with the ``X-Covreq-Ruleset`` header set to ``digest``."""
    return FastJSONResponse(body, status_code=status, headers={RULESET_HEADER: digest, **(headers or {})})


def too_large(rendered: bytes, limit: int) -> str | None:
    """Why an answer of ``rendered`` bytes is not sent (a 413), or None when it is at most
    ``limit`` bytes (``COVREQ_MAX_RESPONSE_BYTES``)."""
    if len(rendered) <= limit:
        return None
    return (f"the answer would be larger than {limit} bytes (COVREQ_MAX_RESPONSE_BYTES): "
            "ask about fewer codes per call")


def rendered_response(content: bytes, digest: str, status: int = 200,
                      headers: dict[str, str] | None = None) -> Response:
    """JSON already rendered (``content``) with the ``X-Covreq-Ruleset`` header set to ``digest``."""
    return Response(content, status_code=status, media_type="application/json",
                    headers={RULESET_HEADER: digest, **(headers or {})})


def v1_error(status: int, message: str, digest: str, location: str = "") -> JSONResponse:
    """The v1 error shape: ``{"ruleset", "error": {"status", "message", "location"}}``."""
    return json_response({"ruleset": digest,
                          "error": {"status": status, "message": message, "location": location}},
                         digest, status)
