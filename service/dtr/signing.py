"""The signed context of a DTR adaptive QuestionnaireResponse.

covreq keeps no state between ``$next-question`` calls, so the client holds what the server filled
and decided: the facts it read from the order, the form whose rules run, the Coverage, the orders
and the patient. This module seals that :class:`Context` into the response as a JWS (HS256, the
key id in its ``kid`` header, an ``exp``) and opens it again, so that an altered, foreign, expired
or unsigned response is told from an honest round trip, on any replica that holds the key.

Keys come from the file ``COVREQ_DTR_KEYS`` names (:meth:`Keyring.load`): every key listed verifies,
the ``active`` one signs, so keys rotate by adding a new one, making it active, and removing the
old one once the forms it signed are done. Without that setting each process makes a random key
at start (:meth:`Keyring.ephemeral`) and says so in the log: round trips then do not survive a
restart, nor reach another replica.
"""
from __future__ import annotations

import datetime as dt
import logging
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import jwt

from service.fhir.outcome import FhirError
from service.fhir.values import as_list
from service.settings import Settings, read_config

log = logging.getLogger("covreq.dtr")

#: The QuestionnaireResponse extension that carries the signed context (a covreq extension).
CONTEXT_URL = "urn:covreq:dtr-signed-context"
#: Where the extension sits, for OperationOutcome expressions.
CONTEXT_EXPRESSION = f"QuestionnaireResponse.extension.where(url = '{CONTEXT_URL}')"
#: The JWS ``typ`` header and ``iss`` claim: a context token is never taken for any other covreq token.
TOKEN_TYPE = "covreq-dtr-context+jwt"
ISSUER = "covreq"
ALGORITHM = "HS256"
#: Shortest secret accepted in the key file, in characters (HS256 wants 256 bits).
MIN_SECRET_LENGTH = 32
#: How long a context stays valid after the server read the order, unless the key file says otherwise.
DEFAULT_LIFETIME_DAYS = 30
#: Clock skew tolerated between replicas on ``exp`` and ``iat``, in seconds.
LEEWAY = 60
_REFUSED = 422


@dataclass(frozen=True)
class Context:
    """What the server filled and decided in one adaptive response."""

    form: tuple[str, ...]  # the canonicals (url|version) the contained Questionnaire derives from
    known: Mapping[str, Any]  # facts the server filled from the order (group ``order``), as read back
    coverage: tuple[str, ...]  # qr-coverage references
    orders: tuple[str, ...]  # qr-context references
    subject: str | None  # the patient
    uses: tuple[str, ...] = ()  # the intendedUse codings, as ``system|code``
    version: str = "2.2"  # the DTR version the response is shaped for (service/dtr/versions.py)


@dataclass(frozen=True)
class Signed:
    """A context whose signature verified, with when the server first read the order and until when
    the context holds."""

    context: Context
    issued: int
    expires: int
    kid: str


class Keyring:
    """The HMAC keys that seal and open contexts: ``keys`` by kid, ``active`` signs."""

    def __init__(self, keys: Mapping[str, str], active: str, lifetime: dt.timedelta, ephemeral: bool = False) -> None:
        if active not in keys:
            raise ValueError(f"the active key {active!r} is not among the keys")
        self._keys = {kid: secret.encode() for kid, secret in keys.items()}
        self.active, self.lifetime, self.ephemeral = active, lifetime, ephemeral

    @property
    def kids(self) -> tuple[str, ...]:
        """The ids of every key that verifies."""
        return tuple(self._keys)

    @classmethod
    def load(cls, path: Path) -> "Keyring":
        """The keys of a YAML file ``{active: kid, keys: {kid: secret, ...}, lifetime_days: N}``;
        raises ValueError naming the file and what is wrong."""
        data = read_config(path)
        if not isinstance(data, dict) or not isinstance(data.get("keys"), dict) or not data["keys"]:
            raise ValueError(f"{path}: expected a mapping with 'active' and 'keys' (key ids to secrets)")
        keys = {str(kid): secret for kid, secret in data["keys"].items()}
        for kid, secret in keys.items():
            if not isinstance(secret, str) or len(secret) < MIN_SECRET_LENGTH:
                raise ValueError(f"{path}: key {kid!r} must be a string of at least {MIN_SECRET_LENGTH} characters")
        active = data.get("active")
        if not isinstance(active, str) or active not in keys:
            raise ValueError(f"{path}: 'active' must name one of the keys ({', '.join(keys)})")
        days = data.get("lifetime_days", DEFAULT_LIFETIME_DAYS)
        if isinstance(days, bool) or not isinstance(days, int) or days < 1:
            raise ValueError(f"{path}: 'lifetime_days' must be a whole number of days, at least 1")
        unknown = set(data) - {"active", "keys", "lifetime_days"}
        if unknown:
            raise ValueError(f"{path}: unknown setting(s) {', '.join(sorted(map(str, unknown)))}")
        return cls(keys, active, dt.timedelta(days=days))

    @classmethod
    def ephemeral(cls) -> "Keyring":
        """A random key of this process only."""
        kid = f"ephemeral-{secrets.token_hex(4)}"
        return cls({kid: secrets.token_urlsafe(48)}, kid, dt.timedelta(days=DEFAULT_LIFETIME_DAYS), ephemeral=True)

    @staticmethod
    def write_random(path: Path) -> None:
        """Write a key file holding one random key, readable by its owner only."""
        kid = f"random-{secrets.token_hex(4)}"
        path.touch(mode=0o600)
        path.write_text(f"active: {kid}\nkeys:\n  {kid}: {secrets.token_urlsafe(48)}\n", encoding="utf-8")

    @classmethod
    def from_settings(cls, settings: Settings) -> "Keyring":
        """The keys of ``settings.dtr_keys``, or an ephemeral key (with a warning in the log)."""
        if settings.dtr_keys is not None:
            return cls.load(settings.dtr_keys)
        log.warning("COVREQ_DTR_KEYS is not set: DTR forms are signed with a key made at start; a form in progress "
                    "is refused after a restart and by any other replica", extra={"event": "dtr-keys-ephemeral"})
        return cls.ephemeral()

    def seal(self, context: Context, since: Signed | None = None, now: dt.datetime | None = None) -> dict[str, Any]:
        """The extension carrying ``context`` signed with the active key; a context read from an
        earlier response (``since``) keeps when it was issued and when it expires."""
        moment = int((now or dt.datetime.now(dt.timezone.utc)).timestamp())
        issued = since.issued if since else moment
        expires = since.expires if since else moment + int(self.lifetime.total_seconds())
        claims = {"iss": ISSUER, "iat": issued, "exp": expires, "form": list(context.form),
                  "known": dict(context.known), "coverage": list(context.coverage), "context": list(context.orders),
                  "subject": context.subject, "uses": list(context.uses), "dtr": context.version}
        token = jwt.encode(claims, self._keys[self.active], algorithm=ALGORITHM,
                           headers={"kid": self.active, "typ": TOKEN_TYPE})
        return {"url": CONTEXT_URL, "valueString": token}

    def open(self, response: Mapping[str, Any]) -> Signed:
        """The context signed into ``response``; raises FhirError (422) when it is missing, doubled,
        not a context token, signed with a key this server does not hold, altered or expired."""
        found = [e for e in as_list(response.get("extension")) if isinstance(e, dict) and e.get("url") == CONTEXT_URL]
        if not found:
            raise FhirError(_REFUSED, "the response carries no context signed by this server: send a response "
                                      "$questionnaire-package or $next-question returned", "QuestionnaireResponse.extension")
        if len(found) > 1 or not isinstance(found[0].get("valueString"), str):
            raise FhirError(_REFUSED, "the response must carry one signed context (a valueString)", CONTEXT_EXPRESSION)
        token = found[0]["valueString"]
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise FhirError(_REFUSED, "the signed context is not a JWS", CONTEXT_EXPRESSION) from None
        kid = header.get("kid")
        if header.get("typ") != TOKEN_TYPE or header.get("alg") != ALGORITHM:
            raise FhirError(_REFUSED, f"the signed context must be a {TOKEN_TYPE} signed with {ALGORITHM}",
                            CONTEXT_EXPRESSION)
        if not isinstance(kid, str) or kid not in self._keys:
            raise FhirError(_REFUSED, f"the context is signed with key {str(kid)[:64]!r}, which this server does not "
                                      "hold (another server's key, or one retired): package the order again",
                            CONTEXT_EXPRESSION)
        try:
            claims = jwt.decode(token, self._keys[kid], algorithms=[ALGORITHM], issuer=ISSUER, leeway=LEEWAY,
                                options={"require": ["iss", "iat", "exp"]})
        except jwt.ExpiredSignatureError:
            raise FhirError(_REFUSED, "the signed context has expired: package the order again",
                            CONTEXT_EXPRESSION) from None
        except jwt.InvalidSignatureError:
            raise FhirError(_REFUSED, "the signature of the context does not verify: the context was altered",
                            CONTEXT_EXPRESSION) from None
        except jwt.PyJWTError as err:
            raise FhirError(_REFUSED, f"the signed context is refused: {str(err)[:200]}", CONTEXT_EXPRESSION) from None
        return Signed(_context(claims), claims["iat"], claims["exp"], kid)


def _context(claims: Mapping[str, Any]) -> Context:
    """The context of verified claims; raises FhirError when they are not a context's."""
    texts = {name: claims.get(name) for name in ("form", "coverage", "context", "uses")}
    if not all(isinstance(v, list) and all(isinstance(t, str) for t in v) for v in texts.values()) \
            or not isinstance(claims.get("known"), dict) or not isinstance(claims.get("subject"), (str, type(None))) \
            or not isinstance(claims.get("dtr", ""), str):
        raise FhirError(_REFUSED, "the signed context does not hold what a DTR context holds", CONTEXT_EXPRESSION)
    return Context(tuple(claims["form"]), claims["known"], tuple(claims["coverage"]), tuple(claims["context"]),
                   claims["subject"], tuple(claims["uses"]), claims.get("dtr", "2.2"))  # before versions: 2.2 shapes
