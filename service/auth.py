"""Who may call: signed JWTs on the CDS Hooks endpoints, an API key or JWT on ``/v1/*``.

CDS Hooks security: the EHR sends ``Authorization: Bearer <JWT>`` signed with its private key;
the JWT names the EHR (``iss``), the service (``aud``), a short validity (``iat``, ``exp``) and a
nonce (``jti``). The service trusts the issuers listed in a configuration file, each with its
public keys (a JWKS file, a PEM file, or a ``jwks_uri`` fetched as service/jwks.py says, and the
key sets at the ``jku`` URLs listed for it, fetched as service/jku.py says), and refuses a ``jti``
it has already seen (in this process, or in the database every worker and replica shares when one
is configured: service/store/replay.py).
Everything here is off unless configured (see docs/operations.md).
"""
from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from service import api_keys
from service.crd import routes as crd_routes
from service.dtr import routes as dtr_routes
from service.jku import JkuSets
from service.jwks import JwksPolicy, RemoteKeys, check_uri, named_key
from service.replay import ReplayCache
from service.settings import Settings, read_config
from service.smart import PUBLIC_PATHS as SMART_PUBLIC

if TYPE_CHECKING:
    from service.smart.tokens import AccessTokens
from service.store.replay import DatabaseReplay, StoreUnavailable

log = logging.getLogger("covreq.auth")

#: Only asymmetric signatures: a shared-secret (HS*) or unsigned (none) token is refused.
ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
#: Clock skew tolerated on ``exp`` and ``iat``, in seconds.
LEEWAY = 60
#: Longest validity (``exp - iat``) accepted, in seconds; it also bounds how long a ``jti`` is kept.
MAX_LIFETIME = 300
#: Most ``jti`` values remembered at once; past it the oldest are forgotten first.
REPLAY_CACHE_SIZE = 100_000
#: Longest bearer token read, in characters; a longer one is refused before it is decoded.
MAX_TOKEN_LENGTH = 8192
#: Longest ``sub`` or ``tenant`` claim accepted, in characters (both go into the audit trail).
MAX_CLAIM_LENGTH = 256
#: Characters of a caller-sent value quoted in a refusal.
_QUOTED = 64
API_KEY_HEADER = "x-api-key"


class AuthError(Exception):
    """A caller could not be authenticated; ``message`` says why (sent back with the 401)."""

    def __init__(self, message: str, token_given: bool = False) -> None:
        super().__init__(message)
        self.message, self.token_given = message, token_given


class AuthConfigError(ValueError):
    """The authentication configuration is unusable; the service does not start."""


@dataclass(frozen=True)
class Caller:
    """An authenticated caller: ``kind`` is ``jwt``, ``api-key`` or ``anonymous`` (auth off)."""

    kind: str
    name: str
    subject: str | None = None
    tenant: str | None = None

    def as_dict(self) -> dict[str, str]:
        """JSON-ready form for the audit record, without empty fields."""
        return {k: v for k, v in vars(self).items() if v}


ANONYMOUS = Caller("anonymous", "anonymous")


def _quoted(value: Any) -> str:
    """A caller-sent value as it may appear in a refusal: its repr, cut short."""
    text = repr(value)
    return text if len(text) <= _QUOTED else text[:_QUOTED] + "..."


def algorithms_of(key: Any) -> tuple[str, ...]:
    """The signature algorithms a public key can check: RS*/PS* for RSA, the ES* of an EC key's
    curve, EdDSA for Ed25519/Ed448; none for any other key."""
    if isinstance(key, rsa.RSAPublicKey):
        return ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")
    if isinstance(key, ec.EllipticCurvePublicKey):
        return tuple(alg for alg, curve in _CURVES.items() if isinstance(key.curve, curve))
    if isinstance(key, (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey)):
        return ("EdDSA",)
    return ()


_CURVES = {"ES256": ec.SECP256R1, "ES384": ec.SECP384R1, "ES512": ec.SECP521R1}


@dataclass(frozen=True)
class TrustedKey:
    """A public key and the algorithms a token signed with it may name (pinned by the JWKS
    ``alg`` or the issuer entry's ``alg`` when given, else every algorithm of the key's type)."""

    key: Any
    algorithms: tuple[str, ...]

    @classmethod
    def of(cls, key: Any, alg: Any, where: str) -> "TrustedKey":
        """Pin ``key`` to ``alg`` (None: every algorithm its type takes); raises AuthConfigError."""
        fitting = algorithms_of(key)
        if alg is not None and alg not in fitting:
            raise AuthConfigError(f"{where}: alg {alg!r} does not fit the key (it takes {', '.join(fitting) or 'none'})")
        if not fitting:
            raise AuthConfigError(f"{where}: the key's type signs with none of {', '.join(ALGORITHMS)}")
        return cls(key, (alg,) if alg is not None else fitting)


class KeysOutdated(AuthError):
    """The key set fetched for a token (its issuer's ``jwks_uri``, or the ``jku`` it names) lacks
    its key, or is old, and may be fetched again now: :meth:`Guard.authenticate` awaits
    ``keys.refresh()`` and verifies once more. Anything else that meets it sees the 401 it is."""

    def __init__(self, message: str, keys: "RemoteKeys[TrustedKey]") -> None:
        super().__init__(message, True)
        self.keys = keys


@dataclass(frozen=True)
class Issuer:
    """A trusted EHR: its ``iss``, public keys by ``kid`` (read at start, or fetched from its
    ``jwks_uri`` into ``remote``) and the ``jku`` URLs it may name."""

    iss: str
    keys: Mapping[str | None, TrustedKey]
    jku: frozenset[str] = frozenset()
    remote: RemoteKeys[TrustedKey] | None = None

    def key(self, kid: str | None) -> TrustedKey:
        """The public key a token with this ``kid`` must verify against; raises
        :class:`KeysOutdated` when a fetch of the remote keys is due first."""
        found = named_key(self.remote.keys if self.remote else self.keys, kid)
        if self.remote and self.remote.due(found is not None):
            raise KeysOutdated(f"the keys of issuer {self.iss!r} are being fetched from {self.remote.uri}", self.remote)
        if found is None:
            raise AuthError(f"issuer {self.iss!r} has no key with kid {_quoted(kid)}", True)
        return found


def jwks_keys(document: Mapping[str, Any], where: str, skip_unusable: bool = False) -> dict[str | None, TrustedKey]:
    """The signing keys of a JWKS document by ``kid``; raises ValueError for an unusable key, or
    (``skip_unusable``, for a fetched set) logs and leaves it out, and raises when none is left."""
    found: dict[str | None, TrustedKey] = {}
    for number, data in enumerate(document.get("keys") or []):
        label = f"{where} key {data.get('kid') or number}" if isinstance(data, dict) else f"{where} key {number}"
        try:
            if not isinstance(data, dict):
                raise AuthConfigError(f"{label}: not a JSON object")
            if data.get("use", "sig") != "sig":
                raise AuthConfigError(f"{label}: use {_quoted(data['use'])} is not sig")
            found[data.get("kid")] = TrustedKey.of(jwt.PyJWK.from_dict(data).key, data.get("alg"), label)
        except (AuthConfigError, jwt.PyJWTError, ValueError, TypeError, KeyError) as err:
            if not skip_unusable:
                raise AuthConfigError(str(err) if isinstance(err, AuthConfigError) else f"{label}: {err}") from None
            log.warning("left out %s: %s", label, err, extra={"event": "jwks-key-skipped", "reason": str(err)[:300]})
    if skip_unusable and not found:
        raise ValueError(f"{where}: no usable signing key")
    return found


_KEY_SOURCES = ("jwks", "public_key", "jwks_uri")


def _issuer(entry: Mapping[str, Any], folder: Path, policy: JwksPolicy, jku: frozenset[str]) -> Issuer:
    """One issuer entry: keys from exactly one of a JWKS file, a PEM file or a ``jwks_uri``, or
    only from the key sets at its ``jku`` URLs."""
    sources = [name for name in _KEY_SOURCES if name in entry]
    if not sources and jku:
        return Issuer(entry["iss"], {}, jku)  # its keys are only those fetched from its jku URLs
    if len(sources) != 1:
        raise AuthConfigError(f"issuer {entry['iss']!r} needs exactly one of {', '.join(_KEY_SOURCES)} "
                              "(or jku alone)")
    if sources == ["jwks_uri"]:
        uri = check_uri(entry["jwks_uri"], policy.allow_http)
        remote = RemoteKeys(uri, policy, lambda document: jwks_keys(document, uri, skip_unusable=True))
        return Issuer(entry["iss"], {}, jku | {uri}, remote)
    if sources == ["jwks"]:
        document = json.loads((folder / entry["jwks"]).read_text(encoding="utf-8"))
        if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
            raise AuthConfigError(f"{entry['jwks']}: not a JWK Set (a JSON object with a 'keys' list)")
        return Issuer(entry["iss"], jwks_keys(document, entry["jwks"]), jku)
    key = load_pem_public_key((folder / entry["public_key"]).read_bytes())
    return Issuer(entry["iss"], {entry.get("kid"): TrustedKey.of(key, entry.get("alg"), str(entry["public_key"]))}, jku)


def load_issuers(path: Path, policy: JwksPolicy = JwksPolicy()) -> dict[str, Issuer]:
    """Trusted issuers from a YAML file: ``issuers: [{iss, jwks | public_key | jwks_uri, kid?, alg?, jku?}]``.

    Key file paths are relative to the configuration file; a ``jwks_uri`` is fetched as ``policy``
    says, on the first token of that issuer, and is itself a ``jku`` the issuer may name.
    """
    data = read_config(path) or {}
    issuers: dict[str, Issuer] = {}
    if not isinstance(data, dict) or not isinstance(data.get("issuers") or [], list):
        raise AuthConfigError(f"{path}: expected a mapping with a list under 'issuers'")
    for entry in data.get("issuers") or []:
        if not isinstance(entry, dict) or not isinstance(entry.get("iss"), str):
            raise AuthConfigError(f"{path}: every issuer needs an 'iss' string")
        if not isinstance(entry.get("jku") or [], list):
            raise AuthConfigError(f"{path}: jku of issuer {entry['iss']!r} must be a list of URLs")
        try:
            jku = frozenset(check_uri(uri, policy.allow_http) for uri in entry.get("jku") or ())
        except ValueError as err:
            raise AuthConfigError(f"{path}: jku of issuer {entry['iss']!r}: {err}") from err
        try:
            issuers[entry["iss"]] = _issuer(entry, path.parent, policy, jku)
        except (OSError, ValueError, jwt.PyJWTError) as err:
            raise AuthConfigError(f"{path}: keys of issuer {entry['iss']!r}: {err}") from err
    if not issuers:
        raise AuthConfigError(f"{path}: no trusted issuers")
    return issuers


def load_api_keys(path: Path) -> dict[str, bytes]:
    """API keys from a YAML mapping ``name: sha256:<hex>`` (service/api_keys.py); each key's
    SHA-256 by name. A key in plain text stops the start, saying how to hash it."""
    data = read_config(path) or {}
    if not isinstance(data, dict) or not data:
        raise AuthConfigError(f"{path}: expected a mapping of key names to key hashes")
    try:
        return {str(name): api_keys.parse_hash(str(name), value) for name, value in data.items()}
    except ValueError as err:
        raise AuthConfigError(f"{path}: {err}") from None


class JwtVerifier:
    """Verifies CDS Hooks JWTs: signature, ``iss``, ``aud``, ``exp``, ``iat`` and ``jti`` replay."""

    def __init__(self, issuers: Mapping[str, Issuer], service_url: str, jku: JwksPolicy | None = None,
                 shared: DatabaseReplay | None = None) -> None:
        self.issuers, self.service_url = dict(issuers), service_url.rstrip("/")
        self.jku: JkuSets[TrustedKey] = JkuSets(lambda document, uri: jwks_keys(document, uri, skip_unusable=True),
                                                jku)
        #: The database's replay store, when workers or replicas share one; else the memory below.
        self.shared = shared
        self._seen = ReplayCache(REPLAY_CACHE_SIZE, MAX_LIFETIME + 2 * LEEWAY)

    def verify(self, token: str, path: str) -> Caller:
        """The caller a token proves. On a CDS Hooks endpoint (CDS Hooks 2.0, "Trusting CDS
        Clients") the header's ``typ`` must be JWT and ``aud`` the URL of the endpoint called;
        elsewhere ``typ`` may be left out and ``aud`` may also be the service URL. Raises
        :class:`KeysOutdated` when the token's ``jku`` key set is to be fetched first."""
        cds = crd_routes.owns(path)
        if len(token) > MAX_TOKEN_LENGTH:
            raise AuthError(f"the bearer token is {len(token)} characters long; the limit is {MAX_TOKEN_LENGTH}", True)
        try:
            header = jwt.get_unverified_header(token)
            iss = jwt.decode(token, options={"verify_signature": False}).get("iss")
        except (jwt.PyJWTError, ValueError) as err:
            raise AuthError(f"the bearer token is not a JWT: {str(err)[:200]}", True) from None
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in ALGORITHMS:
            raise AuthError(f"JWT alg {_quoted(alg)} is not accepted; use one of {', '.join(ALGORITHMS)}", True)
        typ = header.get("typ", None if cds else "JWT")
        if not isinstance(typ, str) or typ.upper() != "JWT":
            raise AuthError("JWT header typ must be JWT" + (" (CDS Hooks 2.0 requires it)" if cds else ""), True)
        issuer = self.issuers.get(iss) if isinstance(iss, str) else None
        if issuer is None:
            raise AuthError(f"JWT issuer {_quoted(iss)} is not trusted", True)
        jku = header.get("jku")
        if "jku" in header and (not isinstance(jku, str) or jku not in issuer.jku):
            raise AuthError(f"JWT jku {_quoted(jku)} is not a key set trusted for {iss!r}", True)
        trusted = self._key(issuer, header.get("kid"), jku)
        if alg not in trusted.algorithms:
            raise AuthError(f"JWT alg {alg} is not accepted for this key of {iss!r}; it takes "
                            f"{', '.join(trusted.algorithms)}", True)
        audience = [self.service_url + path] if cds else [self.service_url, self.service_url + path]
        try:
            claims = jwt.decode(token, trusted.key, algorithms=[alg], issuer=iss, audience=audience, leeway=LEEWAY,
                                options={"require": ["iss", "aud", "exp", "iat", "jti"]})
        except jwt.InvalidAudienceError:
            raise AuthError(f"JWT aud must be {' or '.join(map(repr, audience))}", True) from None
        except (jwt.PyJWTError, ValueError, OverflowError) as err:
            raise AuthError(f"JWT refused: {str(err)[:200]}", True) from None
        return self._caller(iss, claims)

    def _key(self, issuer: Issuer, kid: Any, jku: Any) -> TrustedKey:
        """The key a token must verify against: from the key set at its ``jku`` (already checked
        to be allowed for the issuer) when that set holds it, else from the issuer's own keys."""
        if not isinstance(jku, str):
            return issuer.key(kid)
        remote = self.jku.at(jku)
        found = named_key(remote.keys, kid)
        if remote.due(found is not None):
            raise KeysOutdated(f"the key set at {jku} is being fetched", remote)
        return found if found is not None else issuer.key(kid)

    def _caller(self, iss: str, claims: Mapping[str, Any]) -> Caller:
        """Check the claims' types, lifetime and replay; the caller they name."""
        for name in ("exp", "iat"):
            if type(claims[name]) not in (int, float):
                raise AuthError(f"JWT {name} must be a number of seconds (NumericDate)", True)
        if claims["exp"] - claims["iat"] > MAX_LIFETIME:
            raise AuthError(f"JWT is valid for more than {MAX_LIFETIME} seconds (exp - iat)", True)
        for name in ("sub", "tenant"):
            value = claims.get(name)
            if value is not None and (not isinstance(value, str) or len(value) > MAX_CLAIM_LENGTH):
                raise AuthError(f"JWT {name} must be a string of at most {MAX_CLAIM_LENGTH} characters", True)
        self._remember(iss, str(claims["jti"]), claims["exp"] + LEEWAY)
        return Caller("jwt", iss, claims.get("sub"), claims.get("tenant"))

    def _remember(self, iss: str, jti: str, expires_at: float) -> None:
        """Refuse a replayed ``jti``: in the shared store (kept until ``expires_at``), else in memory."""
        first = self.shared.first_use((iss, jti), expires_at) if self.shared is not None \
            else self._seen.first_use((iss, jti))
        if not first:
            raise AuthError(f"JWT jti {_quoted(jti)} was already used (replay)", True)


class Guard:
    """Decides which requests need credentials and checks them."""

    def __init__(self, verifier: JwtVerifier | None = None, api_keys: Mapping[str, bytes] | None = None,
                 v1_jwt: bool = False, smart: "AccessTokens | None" = None) -> None:
        self.verifier, self.api_keys, self.v1_jwt = verifier, dict(api_keys or {}), v1_jwt
        self.smart = smart  # SMART Backend Services access tokens on /fhir (service/smart/)
        if v1_jwt and verifier is None:
            raise AuthConfigError("a JWT on /v1/* needs trusted issuers and the service URL")

    @classmethod
    def from_settings(cls, settings: Settings, smart: "AccessTokens | None" = None,
                      shared: DatabaseReplay | None = None) -> "Guard":
        """The guard the settings ask for (``smart``: the access tokens /fhir also takes), refusing
        replayed JWTs in ``shared`` when given; raises :class:`AuthConfigError` if the settings are
        unusable."""
        issuers, url = settings.auth_issuers, settings.service_url
        if issuers is not None and not url:
            raise AuthConfigError("trusted JWT issuers need the service URL (the JWT audience)")
        policy = JwksPolicy(settings.jwks_refresh_seconds, settings.jwks_max_age_seconds,
                            settings.jwks_timeout_seconds, settings.jwks_allow_http)
        verifier = JwtVerifier(load_issuers(issuers, policy), url, policy, shared) if issuers and url else None
        return cls(verifier, load_api_keys(settings.api_keys) if settings.api_keys else None,
                   settings.v1_jwt, smart)

    def challenges(self, path: str) -> list[str]:
        """The ``WWW-Authenticate`` challenges of ``path``; none when it is open."""
        bearer = ['Bearer realm="covreq"']
        if crd_routes.owns(path) and path != crd_routes.PREFIX:
            return bearer if self.verifier else []
        if dtr_routes.owns(path) and path != dtr_routes.METADATA and path not in SMART_PUBLIC:
            return bearer if self.verifier or self.smart else []
        if not path.startswith("/v1/"):
            return []
        return (bearer if self.v1_jwt else []) + \
            ([f'ApiKey realm="covreq", header="{API_KEY_HEADER}"'] if self.api_keys else [])

    async def authenticate(self, path: str, headers: Mapping[str, str]) -> Caller:
        """:meth:`caller`, after fetching an issuer's keys when its token needs that (once: the
        fetch that just ran, or failed, is not repeated within its interval). With a shared replay
        store the check runs in a worker thread: its database write never holds the event loop."""
        try:
            return await self._checked(path, headers)
        except KeysOutdated as outdated:
            await outdated.keys.refresh()
        return await self._checked(path, headers)

    async def _checked(self, path: str, headers: Mapping[str, str]) -> Caller:
        """:meth:`caller`, in a worker thread when the replay check writes to a database."""
        if self.verifier is not None and self.verifier.shared is not None:
            return await asyncio.to_thread(self.caller, path, headers)
        return self.caller(path, headers)

    def caller(self, path: str, headers: Mapping[str, str]) -> Caller:
        """Check the credentials of a protected request (keys as held: see :meth:`authenticate`)."""
        key = headers.get(API_KEY_HEADER)
        if key is not None and self.api_keys and path.startswith("/v1/"):
            return self._key_owner(key)
        scheme, _, token = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            wanted = "Authorization: Bearer <JWT>" + (f" or {API_KEY_HEADER}" if
                                                       self.api_keys and path.startswith("/v1/") else "")
            raise AuthError(f"authentication required: send {wanted}")
        if self.smart is not None and dtr_routes.owns(path) and (
                self.verifier is None or self.smart.claims_to_be_one(token.strip())):
            return self.smart.caller(token.strip())
        if self.verifier is None or (path.startswith("/v1/") and not self.v1_jwt):
            raise AuthError(f"this endpoint takes an API key in the {API_KEY_HEADER} header", True)
        return self.verifier.verify(token.strip(), path)

    def _key_owner(self, key: str) -> Caller:
        offered = api_keys.digest(key)
        owner = None
        for name, digest in self.api_keys.items():  # compare with every key, in constant time each
            if hmac.compare_digest(offered, digest):
                owner = name
        if owner is None:
            raise AuthError("the API key is not valid", True)
        return Caller("api-key", owner)


class Authenticate:
    """ASGI middleware: 401 with ``WWW-Authenticate`` for a protected request without valid
    credentials; otherwise the caller is put in ``request.state.caller``."""

    def __init__(self, app: ASGIApp, guard: Guard, refuse: Callable[[str, int, str], Response]) -> None:
        self.app, self.guard, self.refuse = app, guard, refuse

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        challenges = self.guard.challenges(path)
        caller = ANONYMOUS
        if challenges and scope["method"] != "OPTIONS":
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
            started = time.perf_counter()
            try:
                caller = await self.guard.authenticate(path, headers)
            except StoreUnavailable as down:  # no check, no entry: 503, so a balancer may try another replica
                await self.refuse(path, 503, str(down))(scope, receive, send)
                return
            except AuthError as err:
                log.warning("authentication refused: %s", err.message, extra={
                    "event": "auth-refused", "path": path, "reason": err.message,
                    "ms": round((time.perf_counter() - started) * 1000, 2)})
                response = self.refuse(path, 401, err.message)
                invalid = ', error="invalid_token"' if err.token_given else ""
                response.headers["WWW-Authenticate"] = ", ".join(
                    c + invalid if c.startswith("Bearer") else c for c in challenges)
                await response(scope, receive, send)
                return
        scope.setdefault("state", {})["caller"] = caller
        await self.app(scope, receive, send)
