"""The bearer-token check that admin operations (and ``/metrics`` once closed) share."""
from __future__ import annotations

import hmac

from fastapi import Request
from fastapi.responses import JSONResponse

from service.responses import v1_error

#: The challenge sent with a 401 for a missing or wrong token.
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="covreq"'}


def token_refusal(request: Request, token: str, setting: str) -> JSONResponse | None:
    """None when the request sends ``Authorization: Bearer <token>`` (compared in constant time),
    else the 401 naming ``setting``, the variable that holds the token."""
    offered = request.headers.get("authorization", "").encode()
    if hmac.compare_digest(offered, f"Bearer {token}".encode()):
        return None
    response = v1_error(401, f"send Authorization: Bearer <the token set in {setting}>",
                        request.app.state.holder.current.digest, "Authorization")
    response.headers.update(CHALLENGE)
    return response
