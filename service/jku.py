"""Key sets a CDS Hooks JWT names in its ``jku`` header, fetched so that an EHR can rotate its keys.

CDS Hooks 2.0: the EHR MAY make its JWK Set available at the URL its tokens name in ``jku``, and
CDS services SHOULD allow only the ``jku`` of EHRs they trust. covreq fetches a ``jku`` only when
the operator lists it for the token's issuer (the issuers file, service/auth.py), so the URLs, and
the key sets held, are bounded by that list. Each set is fetched, cached and refreshed as
service/jwks.py says: at most once per ``refresh_seconds``, again after ``max_age_seconds`` or for
a ``kid`` it lacks, each fetch bounded in time, bytes and keys; a failed fetch keeps the keys held.
"""
from __future__ import annotations

import threading
from typing import Any, Callable, Generic, Mapping, TypeVar

from service.jwks import JwksPolicy, RemoteKeys

K = TypeVar("K")
#: how every ``jku`` key set is fetched (service/jwks.py has the bounds on bytes and keys)
POLICY = JwksPolicy()


class JkuSets(Generic[K]):
    """The key set at each allowed ``jku`` URL, as ``parse(document, uri)`` reads it (raising
    ValueError for a set it cannot use); created on the first token that names the URL."""

    def __init__(self, parse: Callable[[Mapping[str, Any], str], Mapping[str | None, K]],
                 policy: JwksPolicy | None = None) -> None:
        self.policy, self._parse = policy or POLICY, parse
        self._sets: dict[str, RemoteKeys[K]] = {}
        self._lock = threading.Lock()

    def at(self, uri: str) -> RemoteKeys[K]:
        """The key set at ``uri``, which the caller has checked is allowed for the token's issuer."""
        with self._lock:
            if uri not in self._sets:
                self._sets[uri] = RemoteKeys(uri, self.policy, lambda document: self._parse(document, uri))
            return self._sets[uri]
