"""The registered SMART Backend Services clients: the operator's file (``COVREQ_SMART_CLIENTS``),
read and checked at start so that a mistake stops the service with the file and line.

.. code-block:: yaml

    clients:
      - client_id: dtr-app
        jwks_uri: https://dtr.example.org/.well-known/jwks.json
        scopes: [system/Questionnaire.rs, system/ValueSet.rs, system/Library.rs]
      - client_id: ehr-backend
        jwks: {keys: [{kty: EC, crv: P-384, kid: ehr-1, x: ..., y: ...}]}
        scopes: [system/*.read]
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping


from service import auth
from service.auth import AuthConfigError, TrustedKey
from service.jwks import check_uri
from service.settings import read_config_located
from service.smart.scopes import Scope

log = logging.getLogger("covreq.smart")

#: The algorithms a client assertion may be signed with: SMART Backend Services names RS384 and ES384.
ALGORITHMS = ("RS384", "ES384")
#: Longest ``client_id`` accepted, in characters.
MAX_CLIENT_ID = 256
_FIELDS = {"client_id", "jwks", "jwks_uri", "scopes"}


@dataclass(frozen=True)
class Client:
    """A registered client: its id, its public keys (``keys`` by kid, from an inline JWKS) or the URL
    of its JWKS, and the scopes it may be granted."""

    client_id: str
    scopes: tuple[Scope, ...]
    keys: Mapping[str | None, TrustedKey]
    jwks_uri: str | None = None


def jwks_keys(jwks: Any, where: str, skip_unusable: bool = False) -> dict[str | None, TrustedKey]:
    """The keys of a JWKS that can check RS384 or ES384, by kid (read as a JWT issuer's are:
    service.auth.jwks_keys); raises ValueError naming ``where`` for a malformed set or (unless
    ``skip_unusable``, as for a fetched set) an unusable key."""
    if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list):
        raise ValueError(f"{where}: a JWKS is a mapping with a list under 'keys'")
    found: dict[str | None, TrustedKey] = {}
    for kid, trusted in auth.jwks_keys(jwks, where, skip_unusable).items():
        usable = tuple(alg for alg in trusted.algorithms if alg in ALGORITHMS)
        if usable:
            found[kid if isinstance(kid, str) else None] = TrustedKey(trusted.key, usable)
        elif not skip_unusable:
            label = f"{where} key {kid}" if kid else f"{where}: a key without kid"
            raise ValueError(f"{label}: it checks none of {', '.join(ALGORITHMS)}")
        else:
            log.info("JWKS key skipped: %s key %s checks none of %s", where, kid, ", ".join(ALGORITHMS),
                     extra={"event": "smart-jwks-key-skipped", "jwks": where})
    if skip_unusable and not found:
        raise ValueError(f"{where}: no key that checks {' or '.join(ALGORITHMS)}")
    return found


class _Wrong(ValueError):
    """A mistake in one client entry, and where in the entry (``at``: keys and indexes) it is."""

    def __init__(self, message: str, *at: object) -> None:
        super().__init__(message)
        self.at = at


def _jwks_uri(value: Any, loopback_http: bool) -> str:
    """``value`` when it is an https URL (or, with ``loopback_http``, http to a loopback address)."""
    try:
        uri = check_uri(value)
    except ValueError:
        raise _Wrong(f"jwks_uri must be an https URL, not {str(value)[:80]!r}", "jwks_uri") from None
    if uri.startswith("http:") and not loopback_http:
        raise _Wrong(f"jwks_uri must be https ({uri!r}); plain http is allowed only to a loopback "
                     "address with COVREQ_SMART_LOOPBACK_HTTP=1", "jwks_uri")
    return uri


def _client(entry: Any, loopback_http: bool) -> Client:
    """One entry of the file; raises ValueError saying what is wrong with it."""
    if not isinstance(entry, dict):
        raise ValueError("every client is a mapping with client_id, jwks or jwks_uri, and scopes")
    unknown = sorted(set(map(str, entry)) - _FIELDS)
    if unknown:
        raise ValueError(f"unknown field(s) {', '.join(unknown)} (a client has {', '.join(sorted(_FIELDS))})")
    client_id = entry.get("client_id")
    if not isinstance(client_id, str) or not client_id.strip() or len(client_id) > MAX_CLIENT_ID:
        raise _Wrong(f"client_id must be a string of 1 to {MAX_CLIENT_ID} characters", "client_id")
    if ("jwks" in entry) == ("jwks_uri" in entry):
        raise ValueError(f"client {client_id!r} needs exactly one of jwks (the keys) and jwks_uri (their URL)")
    scopes = entry.get("scopes")
    if not isinstance(scopes, list) or not scopes:
        raise _Wrong(f"client {client_id!r} needs a list of scopes, e.g. [system/Questionnaire.rs]", "scopes")
    parsed = [Scope.parse(s) if isinstance(s, str) else None for s in scopes]
    for number, (text, scope) in enumerate(zip(scopes, parsed)):
        if scope is None:
            raise _Wrong(f"client {client_id!r}: {str(text)[:80]!r} is not a system scope "
                         "(system/<Type or *>.<read|write|*> or .<letters of cruds>)", "scopes", number)
    if "jwks" in entry:
        try:
            keys = jwks_keys(entry["jwks"], f"client {client_id!r} jwks")
        except ValueError as err:
            raise _Wrong(str(err), "jwks") from None
        if not keys:
            raise _Wrong(f"client {client_id!r}: the JWKS holds no key", "jwks")
        return Client(client_id, tuple(s for s in parsed if s), keys)
    return Client(client_id, tuple(s for s in parsed if s), {}, _jwks_uri(entry["jwks_uri"], loopback_http))


def load_clients(path: Path, loopback_http: bool = False) -> dict[str, Client]:
    """The clients of the registration file, by client_id; raises AuthConfigError naming the file and
    the line of the first mistake."""
    try:
        data, places = read_config_located(path)
    except ValueError as err:
        raise AuthConfigError(str(err)) from None
    if not isinstance(data, dict) or not isinstance(data.get("clients"), list) or not data["clients"]:
        raise AuthConfigError(f"{path}: expected a mapping with a list of clients under 'clients'")
    clients: dict[str, Client] = {}
    for number, entry in enumerate(data["clients"]):
        where = f"{path}:{places.find(('clients', number)).line}"
        try:
            client = _client(entry, loopback_http)
        except _Wrong as err:
            raise AuthConfigError(f"{path}:{places.find(('clients', number, *err.at)).line}: {err}") from None
        except ValueError as err:
            raise AuthConfigError(f"{where}: {err}") from None
        if client.client_id in clients:
            raise AuthConfigError(f"{where}: client_id {client.client_id!r} is registered twice")
        clients[client.client_id] = client
    return clients
