"""OAuth 2.0 error responses of the token endpoint (RFC 6749 section 5.2)."""
from __future__ import annotations

from fastapi.responses import JSONResponse

#: RFC 6749 5.1: token responses (and their errors) are never cached.
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


class OAuthError(Exception):
    """A refused token request: ``error`` is the RFC 6749 code, ``description`` says why. A client
    that failed to authenticate (``invalid_client``) gets 401, any other refusal 400."""

    def __init__(self, error: str, description: str) -> None:
        super().__init__(description)
        self.error, self.description = error, description

    @property
    def status(self) -> int:
        """The HTTP status RFC 6749 5.2 gives the error."""
        return 401 if self.error == "invalid_client" else 400

    def response(self) -> JSONResponse:
        """The JSON error body, not to be cached."""
        return JSONResponse({"error": self.error, "error_description": self.description},
                            status_code=self.status, headers=NO_STORE)
