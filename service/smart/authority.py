"""The authorization server of SMART Backend Services: a ``client_credentials`` token request,
authenticated with a client assertion (``private_key_jwt``), answered with an access token for the
requested scopes the client is registered for."""
from __future__ import annotations

import logging
from typing import Any, Mapping
from urllib.parse import parse_qs

from service.settings import Settings
from service.smart.assertion import AssertionVerifier
from service.smart.clients import load_clients
from service.smart.jwks import JwksCache
from service.smart.oauth import OAuthError
from service.smart.scopes import grant
from service.smart.tokens import AccessTokens

log = logging.getLogger("covreq.smart")

GRANT_TYPE = "client_credentials"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
FORM = "application/x-www-form-urlencoded"


def form_of(content_type: str, body: bytes) -> dict[str, str]:
    """The parameters of a token request body; raises OAuthError (invalid_request) for another media
    type, text that is not UTF-8 or a parameter sent twice (RFC 6749 3.2)."""
    if content_type.split(";")[0].strip().lower() != FORM:
        raise OAuthError("invalid_request", f"send the token request as {FORM}")
    try:
        pairs = parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except (UnicodeDecodeError, ValueError):
        raise OAuthError("invalid_request", "the request body is not form-encoded UTF-8") from None
    doubled = sorted(name for name, values in pairs.items() if len(values) > 1)
    if doubled:
        raise OAuthError("invalid_request", f"parameter(s) sent more than once: {', '.join(doubled)[:200]}")
    return {name: values[0] for name, values in pairs.items()}


class Authority:
    """The registered clients, the checks of their assertions and the access tokens issued."""

    def __init__(self, verifier: AssertionVerifier, tokens: AccessTokens) -> None:
        self.verifier, self.tokens = verifier, tokens

    @classmethod
    def from_settings(cls, settings: Settings) -> "Authority | None":
        """The authority ``settings.smart_clients`` asks for (None when unset); raises AuthConfigError."""
        if settings.smart_clients is None:
            return None
        clients = load_clients(settings.smart_clients, settings.smart_loopback_http)
        return cls(AssertionVerifier(clients, JwksCache()), AccessTokens.from_settings(settings))

    @property
    def scopes_supported(self) -> list[str]:
        """Every scope some registered client may be granted, as registered."""
        return sorted({str(scope) for client in self.verifier.clients.values() for scope in client.scopes})

    async def token(self, form: Mapping[str, str], token_url: str) -> dict[str, Any]:
        """The access token response to a token request's parameters; raises OAuthError."""
        grant_type = form.get("grant_type")
        if not grant_type:
            raise OAuthError("invalid_request", "grant_type is required (client_credentials)")
        if grant_type != GRANT_TYPE:
            raise OAuthError("unsupported_grant_type", f"grant_type must be {GRANT_TYPE}, not {grant_type[:64]!r}")
        if form.get("client_assertion_type") != ASSERTION_TYPE or not form.get("client_assertion"):
            raise OAuthError("invalid_client", f"authenticate with client_assertion_type={ASSERTION_TYPE} "
                                               "and a client_assertion JWT (private_key_jwt)")
        client = await self.verifier.verify(form["client_assertion"], token_url)
        if form.get("client_id", client.client_id) != client.client_id:
            raise OAuthError("invalid_client", "client_id differs from the client_assertion's iss")
        requested = form.get("scope", "").strip()
        if not requested:
            raise OAuthError("invalid_request", "scope is required, e.g. system/Questionnaire.rs")
        granted = grant(requested, client.scopes)
        if not granted:
            raise OAuthError("invalid_scope", f"none of the requested scopes is granted to {client.client_id!r} "
                                              f"(it may have {' '.join(map(str, client.scopes))})")
        log.info("access token issued", extra={"event": "smart-token", "client": client.client_id,
                                               "scope": " ".join(granted)})
        return {"access_token": self.tokens.issue(client.client_id, granted), "token_type": "bearer",
                "expires_in": self.tokens.seconds, "scope": " ".join(granted)}
