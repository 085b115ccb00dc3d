"""An issuer's public keys fetched from its ``jwks_uri``, so an EHR rotates keys without a restart.

The key set is fetched when a token names a ``kid`` it lacks, or when it is older than
``max_age_seconds``, but at most once per ``refresh_seconds`` per issuer: a flood of invented
``kid`` values makes one fetch per interval, not one per token. A fetch runs on the event loop
without blocking it (httpx, async), is bounded as a whole in time, in bytes and in keys, follows
no redirect, and is shared by every request that waits for it. A failed fetch keeps the keys
already held. What a key means (its algorithms) is the caller's ``parse``: this module only fetches.
PyJWT's ``PyJWKClient`` is not used: it fetches synchronously, unbounded in bytes, and again for
every unknown ``kid``.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from typing import Any, Callable, Generic, Mapping, TypeVar
from urllib.parse import urlsplit

import httpx

from service.hosts import is_loopback

log = logging.getLogger("covreq.auth")

#: Largest JWKS document read, in bytes (after decompression); a larger one is a failed fetch.
MAX_JWKS_BYTES = 262_144
#: Most keys one JWKS document may hold; more is a failed fetch.
MAX_JWKS_KEYS = 100

K = TypeVar("K")


class JwksError(Exception):
    """A fetch of a key set failed; the message says why (for the log)."""


@dataclass(frozen=True)
class JwksPolicy:
    """How remote key sets are fetched: at most once per ``refresh_seconds`` per issuer, again after
    ``max_age_seconds``, each fetch within ``timeout_seconds``; ``allow_http`` permits plain http to
    hosts other than loopback (an attacker on the path could then swap the keys)."""

    refresh_seconds: float = 60.0
    max_age_seconds: float = 3600.0
    timeout_seconds: float = 5.0
    allow_http: bool = False


def check_uri(uri: Any, allow_http: bool = False) -> str:
    """``uri`` if keys may be fetched from it: https, or http to a loopback address (or anywhere
    with ``allow_http``); raises ValueError otherwise."""
    parts = urlsplit(uri) if isinstance(uri, str) else None
    if parts and parts.hostname and not parts.username and (
            parts.scheme == "https" or parts.scheme == "http" and (allow_http or is_loopback(parts.hostname))):
        return str(uri)
    raise ValueError(f"jwks_uri must be an https:// URL (http:// only to a loopback address, or with "
                     f"COVREQ_JWKS_ALLOW_HTTP=1), not {uri!r}")


def named_key(keys: Mapping[str | None, K], kid: Any) -> K | None:
    """The key a token's ``kid`` names in ``keys``: the one with that kid, or, when the token names
    none, the only key held; None otherwise."""
    if kid in keys:
        return keys[kid]
    return next(iter(keys.values())) if kid is None and len(keys) == 1 else None


class RemoteKeys(Generic[K]):
    """The keys at ``uri`` by ``kid``, as ``parse`` reads a JWKS document (raising ValueError for
    one it cannot use); empty until the first fetch."""

    def __init__(self, uri: str, policy: JwksPolicy, parse: Callable[[Mapping[str, Any]], Mapping[str | None, K]],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.uri, self.policy, self._parse, self._clock = uri, policy, parse, clock
        self.keys: Mapping[str | None, K] = {}
        self.fetches = 0
        self._fetched_at: float | None = None
        self._tried_at: float | None = None
        self._task: asyncio.Task[None] | None = None

    def due(self, found: bool) -> bool:
        """Whether a token should wait for a fetch: its key was not ``found`` (and a fetch is under
        way or may start), or the keys are older than ``max_age_seconds`` and a fetch may start.
        A fetch may start when none started within the last ``refresh_seconds``."""
        now = self._clock()
        if found and self._fetched_at is not None and now - self._fetched_at < self.policy.max_age_seconds:
            return False
        if self._task is not None and not self._task.done():
            return not found
        return self._tried_at is None or now - self._tried_at >= self.policy.refresh_seconds

    async def refresh(self) -> None:
        """Fetch the key set, unless one was fetched within ``refresh_seconds``; callers arriving
        during a fetch wait for that one. Never raises: a failure is logged and the keys stay."""
        loop = asyncio.get_running_loop()
        task = self._task
        if task is None or task.done() or task.get_loop() is not loop:
            if self._tried_at is not None and self._clock() - self._tried_at < self.policy.refresh_seconds:
                return
            self._tried_at = self._clock()
            task = self._task = loop.create_task(self._update())
        await asyncio.shield(task)  # a caller that goes away does not cancel the others' fetch

    async def _update(self) -> None:
        self.fetches += 1
        started = time.perf_counter()
        try:
            document = await asyncio.wait_for(self._download(), self.policy.timeout_seconds)
            keys = self._parse(document)
        except asyncio.TimeoutError:
            reason = f"no answer within {self.policy.timeout_seconds} s"
        except (JwksError, ValueError) as err:
            reason = str(err)[:300]
        except Exception as err:  # noqa: BLE001 - a fetch must never turn a caller's 401 into a 500
            log.exception("jwks-fetch-failed", extra={"event": "jwks-fetch-failed", "uri": self.uri})
            reason = type(err).__name__
        else:
            self.keys, self._fetched_at = keys, self._clock()
            log.info("fetched %d key(s) from %s", len(keys), self.uri, extra={
                "event": "jwks-fetched", "uri": self.uri, "kids": sorted(str(k) for k in keys),
                "ms": round((time.perf_counter() - started) * 1000, 2)})
            return
        log.warning("cannot fetch the keys at %s: %s; keeping %d key(s) held", self.uri, reason, len(self.keys),
                    extra={"event": "jwks-fetch-failed", "uri": self.uri, "reason": reason})

    async def _download(self) -> Mapping[str, Any]:
        """The JWKS document at the URI: a JSON object with a ``keys`` list, within the bounds."""
        try:
            async with httpx.AsyncClient(timeout=self.policy.timeout_seconds, follow_redirects=False) as http:
                async with http.stream("GET", self.uri, headers={"Accept": "application/jwk-set+json, application/json"}) \
                        as response:
                    if response.status_code != 200:
                        raise JwksError(f"HTTP {response.status_code}")
                    body = bytearray()
                    async for chunk in response.aiter_bytes():
                        body += chunk
                        if len(body) > MAX_JWKS_BYTES:
                            raise JwksError(f"the key set is larger than {MAX_JWKS_BYTES} bytes")
        except httpx.HTTPError as err:
            raise JwksError(f"{type(err).__name__}: {str(err)[:200]}") from None
        try:
            document = json.loads(body)
        except ValueError:
            raise JwksError("the answer is not JSON") from None
        if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
            raise JwksError("the answer is not a JWK Set (a JSON object with a 'keys' list)")
        if len(document["keys"]) > MAX_JWKS_KEYS:
            raise JwksError(f"the key set holds {len(document['keys'])} keys; the limit is {MAX_JWKS_KEYS}")
        return document
