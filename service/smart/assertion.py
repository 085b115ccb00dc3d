"""The client's proof of identity at the token endpoint: a JWT it signed with its private key
(``client_assertion``, RFC 7523 as SMART Backend Services profiles it).

Checked: the header (``alg`` RS384 or ES384 and one the key takes, ``typ`` JWT, a ``jku`` only when
it is the client's registered ``jwks_uri``, ``kid`` naming one of the client's keys); the signature;
``iss`` and ``sub`` both the registered ``client_id``; ``aud`` the token endpoint's URL; ``exp`` not
passed and at most five minutes ahead; ``jti`` not used before by that client. Any failure is
``invalid_client``.
"""
from __future__ import annotations

import time
from typing import Any, Mapping

import jwt

from service.auth import LEEWAY, MAX_CLAIM_LENGTH, MAX_LIFETIME, MAX_TOKEN_LENGTH, REPLAY_CACHE_SIZE, TrustedKey
from service.jwks import named_key
from service.replay import ReplayCache
from service.smart.clients import ALGORITHMS, Client
from service.smart.jwks import JwksCache, JwksError
from service.smart.oauth import OAuthError


def _refused(reason: str) -> OAuthError:
    return OAuthError("invalid_client", f"client_assertion refused: {reason}")


class AssertionVerifier:
    """Checks client assertions against the registered clients, remembering each ``jti``."""

    def __init__(self, clients: Mapping[str, Client], jwks: JwksCache) -> None:
        self.clients, self.jwks = dict(clients), jwks
        self._seen = ReplayCache(REPLAY_CACHE_SIZE, MAX_LIFETIME + 2 * LEEWAY)

    async def verify(self, assertion: str, token_url: str) -> Client:
        """The client ``assertion`` proves for a request to ``token_url``; raises OAuthError."""
        if len(assertion) > MAX_TOKEN_LENGTH:
            raise _refused(f"it is {len(assertion)} characters long; the limit is {MAX_TOKEN_LENGTH}")
        try:
            header = jwt.get_unverified_header(assertion)
            client_id = jwt.decode(assertion, options={"verify_signature": False}).get("iss")
        except (jwt.PyJWTError, ValueError) as err:
            raise _refused(f"not a JWT ({str(err)[:200]})") from None
        client = self.clients.get(client_id) if isinstance(client_id, str) else None
        if client is None:
            raise _refused(f"iss {str(client_id)[:64]!r} is not a registered client_id")
        alg = header.get("alg")
        if alg not in ALGORITHMS:
            raise _refused(f"alg {str(alg)[:16]!r} is not accepted; sign with {' or '.join(ALGORITHMS)}")
        if not isinstance(header.get("typ"), str) or header["typ"].upper() != "JWT":
            raise _refused("the header typ must be JWT")
        if "jku" in header and header["jku"] != client.jwks_uri:
            raise _refused(f"jku {str(header['jku'])[:80]!r} is not the jwks_uri registered for {client_id!r}")
        key = await self._key(client, header.get("kid"), alg)
        try:
            claims = jwt.decode(assertion, key.key, algorithms=[alg], audience=token_url, issuer=client_id,
                                leeway=LEEWAY, options={"require": ["iss", "sub", "aud", "exp", "jti"]})
        except jwt.InvalidAudienceError:
            raise _refused(f"aud must be the token endpoint, {token_url!r}") from None
        except (jwt.PyJWTError, ValueError, OverflowError) as err:
            raise _refused(str(err)[:200]) from None
        self._check(client_id, claims)
        return client

    async def _key(self, client: Client, kid: Any, alg: str) -> TrustedKey:
        """The client's key named by ``kid`` (the only key when none is named) that takes ``alg``; a
        client registered by URL has its set fetched again once when the kid is not in it."""
        if kid is not None and not isinstance(kid, str):
            raise _refused("the header kid must be a string")
        keys = client.keys
        if client.jwks_uri is not None:
            try:
                keys = await self.jwks.keys(client.jwks_uri, kid)
            except JwksError as err:
                raise _refused(f"the client's JWKS could not be read: {err}") from None
        found = named_key({k: v for k, v in keys.items() if alg in v.algorithms}, kid)
        if found is not None:
            return found
        raise _refused(f"no {alg} key with kid {str(kid)[:64]!r} is registered for {client.client_id!r}")

    def _check(self, client_id: str, claims: Mapping[str, Any]) -> None:
        """``sub``, the lifetime and the replay of verified claims."""
        if claims["sub"] != client_id:
            raise _refused("sub must be the client_id, as iss is")
        if type(claims["exp"]) not in (int, float) or claims["exp"] > time.time() + MAX_LIFETIME + LEEWAY:
            raise _refused(f"exp must be a NumericDate at most {MAX_LIFETIME} seconds ahead")
        jti = claims["jti"]
        if not isinstance(jti, str) or not jti or len(jti) > MAX_CLAIM_LENGTH:
            raise _refused(f"jti must be a string of 1 to {MAX_CLAIM_LENGTH} characters")
        if not self._seen.first_use((client_id, jti)):
            raise _refused(f"jti {jti[:64]!r} was already used (replay)")
