"""The access tokens covreq issues to SMART clients and checks on ``/fhir`` requests.

An access token is a JWT (RFC 9068 ``typ`` ``at+jwt``) signed HS256 with covreq's token key: ``iss``
covreq, ``aud`` the FHIR endpoints, ``sub`` and ``client_id`` the client, ``scope`` what was granted,
``iat``, ``exp`` (a few minutes) and ``jti``. Only covreq reads it, so a shared secret is enough; its
``typ`` and key keep it from being taken for any other covreq token. The key comes from the file
``COVREQ_SMART_TOKEN_KEY`` names (one secret of at least 32 characters); without it each process
makes a random key at start and says so in the log (``covreq serve`` gives its workers one).
A new key only costs clients a new token: tokens signed with the old one get 401.
"""
from __future__ import annotations

import hashlib
import logging
import secrets
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import jwt

from service.auth import LEEWAY, MAX_TOKEN_LENGTH, AuthConfigError, AuthError, Caller
from service.settings import Settings
from service.smart.scopes import Scope, parse_all

log = logging.getLogger("covreq.smart")

TOKEN_TYPE = "at+jwt"
ISSUER = "covreq"
AUDIENCE = "covreq/fhir"
ALGORITHM = "HS256"
#: Shortest secret accepted in the key file, in characters (HS256 wants 256 bits).
MIN_SECRET_LENGTH = 32
#: Longest access-token lifetime a setting may ask for, in seconds (SMART recommends at most 300).
MAX_TOKEN_SECONDS = 3600


@dataclass(frozen=True)
class SmartCaller(Caller):
    """A caller authenticated by a SMART access token, with the scopes it was granted."""

    scopes: tuple[str, ...] = ()

    def granted(self) -> list[Scope]:
        """The granted scopes, parsed."""
        return parse_all(self.scopes)


class AccessTokens:
    """Issues and checks access tokens with one secret; ``seconds`` is their lifetime."""

    def __init__(self, secret: str, seconds: int) -> None:
        if not 1 <= seconds <= MAX_TOKEN_SECONDS:
            raise AuthConfigError(f"COVREQ_SMART_TOKEN_SECONDS must be 1 to {MAX_TOKEN_SECONDS}, not {seconds}")
        self._secret, self.seconds = secret.encode(), seconds
        self.kid = "smart-" + hashlib.sha256(self._secret).hexdigest()[:12]

    @classmethod
    def from_settings(cls, settings: Settings) -> "AccessTokens":
        """The key of ``settings.smart_token_key``, or a random one (with a warning in the log)."""
        if settings.smart_token_key is None:
            log.warning("COVREQ_SMART_TOKEN_KEY is not set: SMART access tokens are signed with a key made at "
                        "start; they are refused after a restart and by any other replica",
                        extra={"event": "smart-token-key-ephemeral"})
            return cls(secrets.token_urlsafe(48), settings.smart_token_seconds)
        path = settings.smart_token_key
        try:
            secret = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as err:
            raise AuthConfigError(f"{path}: the SMART token key cannot be read ({err})") from None
        if len(secret) < MIN_SECRET_LENGTH or any(c.isspace() for c in secret):
            raise AuthConfigError(f"{path}: the SMART token key must be one secret of at least "
                                  f"{MIN_SECRET_LENGTH} characters without spaces")
        return cls(secret, settings.smart_token_seconds)

    @staticmethod
    def write_random(path: Path) -> None:
        """Write a key file holding a random secret, readable by its owner only."""
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(48) + "\n", encoding="utf-8")

    def issue(self, client_id: str, scopes: list[str]) -> str:
        """A token for ``client_id`` granting ``scopes``, valid for ``seconds``."""
        now = int(time.time())
        claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": client_id, "client_id": client_id,
                  "scope": " ".join(scopes), "iat": now, "exp": now + self.seconds, "jti": uuid.uuid4().hex}
        return jwt.encode(claims, self._secret, algorithm=ALGORITHM, headers={"typ": TOKEN_TYPE, "kid": self.kid})

    @staticmethod
    def claims_to_be_one(token: str) -> bool:
        """Whether ``token`` says it is an access token (its header ``typ``): other bearer JWTs on
        ``/fhir`` are the CDS Hooks kind."""
        try:
            return jwt.get_unverified_header(token).get("typ") == TOKEN_TYPE
        except jwt.PyJWTError:
            return False

    def caller(self, token: str) -> SmartCaller:
        """The client an access token was issued to; raises AuthError (401) when it is not one of
        covreq's access tokens, was signed with another key, or has expired."""
        if len(token) > MAX_TOKEN_LENGTH or not self.claims_to_be_one(token):
            raise AuthError("the bearer token is not an access token from the token endpoint "
                            "(SMART Backend Services: see /fhir/.well-known/smart-configuration)", True)
        if jwt.get_unverified_header(token).get("kid") != self.kid:
            raise AuthError("the access token was signed with a key this server no longer holds: "
                            "request a new one", True)
        try:
            claims = jwt.decode(token, self._secret, algorithms=[ALGORITHM], issuer=ISSUER, audience=AUDIENCE,
                                leeway=LEEWAY, options={"require": ["iss", "aud", "sub", "exp", "scope"]})
        except jwt.ExpiredSignatureError:
            raise AuthError("the access token has expired: request a new one", True) from None
        except jwt.PyJWTError as err:
            raise AuthError(f"access token refused: {str(err)[:200]}", True) from None
        return SmartCaller("smart", claims["sub"], claims["sub"], scopes=tuple(str(claims["scope"]).split()))
