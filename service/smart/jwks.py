"""The JWKS of clients registered by ``jwks_uri``: fetched when first needed, kept for
:data:`CACHE_SECONDS`, and fetched again early when an assertion names a key the kept set lacks (the
client rotated its keys), at most once per :data:`REFRESH_SECONDS` per URL so that unknown kids
cannot make covreq hammer it. The fetching is service/jwks.py's, bounded as it is for JWT issuers
(no redirects, :data:`service.jwks.MAX_JWKS_BYTES`, :data:`TIMEOUT_SECONDS`).
"""
from __future__ import annotations

from service.auth import TrustedKey
from service.jwks import JwksPolicy, RemoteKeys
from service.smart.clients import jwks_keys

#: How long a fetched key set is used before it is fetched again, in seconds.
CACHE_SECONDS = 300
#: Shortest time between two fetches of one URL, in seconds.
REFRESH_SECONDS = 30
#: Most time one fetch may take, in seconds.
TIMEOUT_SECONDS = 5.0

Keys = dict[str | None, TrustedKey]


class JwksError(Exception):
    """A client's key set could not be fetched or read."""


class JwksCache:
    """Key sets by URL (each URL was checked when its client was registered)."""

    def __init__(self) -> None:
        self._remote: dict[str, RemoteKeys[TrustedKey]] = {}

    async def keys(self, uri: str, kid: str | None) -> Keys:
        """The keys at ``uri``, fetched first when none are kept, when they are older than
        CACHE_SECONDS, or when ``kid`` is not among them (unless the URL was fetched less than
        REFRESH_SECONDS ago); raises JwksError when no key set could ever be fetched."""
        remote = self._remote.get(uri)
        if remote is None:
            policy = JwksPolicy(REFRESH_SECONDS, CACHE_SECONDS, TIMEOUT_SECONDS, allow_http=True)
            remote = self._remote[uri] = RemoteKeys(uri, policy, lambda document: jwks_keys(
                document, uri, skip_unusable=True))
        if remote.due(kid in remote.keys):
            await remote.refresh()
        if not remote.keys:
            raise JwksError(f"no key set could be fetched from {uri} (the log says why)")
        return dict(remote.keys)
