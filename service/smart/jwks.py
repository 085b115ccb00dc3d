"""The JWKS of clients registered by ``jwks_uri``: fetched when first needed, kept for a while, and
fetched again early when an assertion names a key the kept set lacks (the client rotated its keys),
at most once per :data:`REFRESH_SECONDS` per URL so that unknown kids cannot make covreq hammer it.

A fetch is bounded: :data:`TIMEOUT_SECONDS`, :data:`MAX_BYTES`, no redirects, JSON only.
"""
from __future__ import annotations

import json
import time
from typing import Any

import httpx
from cachetools import TTLCache

from service.auth import TrustedKey
from service.smart.clients import jwks_keys

#: How long a fetched key set is used before it is fetched again, in seconds.
CACHE_SECONDS = 300
#: Shortest time between two fetches of one URL, in seconds.
REFRESH_SECONDS = 30
#: Most time one fetch may take, in seconds.
TIMEOUT_SECONDS = 5.0
#: Largest key set read, in bytes.
MAX_BYTES = 65_536

Keys = dict[str | None, TrustedKey]


class JwksError(Exception):
    """A client's key set could not be fetched or read."""


class JwksCache:
    """Key sets by URL, fetched over https (``transport`` replaces the network in tests)."""

    def __init__(self, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._kept: TTLCache[str, Keys] = TTLCache(1024, CACHE_SECONDS)
        self._fetched: TTLCache[str, float] = TTLCache(1024, REFRESH_SECONDS)
        self._transport = transport

    async def keys(self, uri: str, refresh: bool = False) -> Keys:
        """The keys at ``uri``: the kept set, or a fresh one when none is kept or ``refresh`` asks for
        it (unless the URL was fetched less than REFRESH_SECONDS ago); raises JwksError."""
        kept = self._kept.get(uri)
        if kept is not None and (not refresh or uri in self._fetched):
            return kept
        self._fetched[uri] = time.monotonic()
        try:
            self._kept[uri] = keys = jwks_keys(await self._download(uri), uri, skip_unusable=True)
        except ValueError as err:
            raise JwksError(str(err)) from None
        return keys

    async def _download(self, uri: str) -> Any:
        """The JSON at ``uri``; raises JwksError for a failed, redirected, oversized or non-JSON answer."""
        try:
            async with httpx.AsyncClient(timeout=TIMEOUT_SECONDS, follow_redirects=False,
                                         transport=self._transport) as client:
                async with client.stream("GET", uri, headers={"Accept": "application/json"}) as response:
                    if response.status_code != 200:
                        raise JwksError(f"{uri} answered {response.status_code}")
                    body = bytearray()
                    async for piece in response.aiter_bytes():
                        body += piece
                        if len(body) > MAX_BYTES:
                            raise JwksError(f"{uri} sent more than {MAX_BYTES} bytes")
            return json.loads(body)
        except httpx.HTTPError as err:
            raise JwksError(f"{uri} could not be read: {type(err).__name__}") from None
        except ValueError:
            raise JwksError(f"{uri} did not send JSON") from None
