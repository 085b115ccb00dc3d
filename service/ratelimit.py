"""Rate limiting per client: a token bucket per API key, JWT issuer and subject, SMART client, or address.

``COVREQ_RATE_LIMIT="100/60s"`` gives each client 100 requests a minute, refilled evenly (one every
0.6 s), and ``COVREQ_RATE_LIMIT_BURST`` how many it may send at once after a quiet spell (default:
the count of the rate). A request past the limit is answered 429 with ``Retry-After`` (the whole
seconds until the next request would be allowed) in the error shape of its API. The client is
named after authentication, so the middleware runs inside ``service.auth.Authenticate``; the
probes (``/healthz``, ``/readyz``) are never limited. The buckets live in each worker process, in a
table of at most :data:`MAX_CLIENTS` entries, each forgotten only after it would be full again (an
idle client loses nothing by being forgotten); past the bound the least recently seen go first, so
an attacker rotating addresses costs memory no more than that.
"""
from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass
from typing import Callable

from cachetools import TTLCache
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from service.auth import ANONYMOUS, Caller
from service.ops import PROBES

#: Most clients whose buckets one worker keeps; past it the least recently seen are forgotten.
MAX_CLIENTS = 50_000
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d*(?:\.\d+)?)\s*(s|m|h)\s*$")
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}


@dataclass(frozen=True)
class Rate:
    """``count`` requests per ``seconds``, with bursts of up to ``burst``."""

    count: int
    seconds: float
    burst: int

    @classmethod
    def parse(cls, text: str, burst: int | None = None, setting: str = "COVREQ_RATE_LIMIT") -> "Rate":
        """``"100/60s"``, ``"100/m"``, ``"5/s"``, ``"1000/1h"``; raises ValueError naming ``setting``."""
        match = _RATE.match(text)
        number = float(match.group(2) or 1) if match else 0.0
        if not match or int(match.group(1)) < 1 or number <= 0:
            raise ValueError(f"{setting} is requests per time, e.g. 100/60s, 100/m or 5/s, not {text!r}")
        count = int(match.group(1))
        if burst is not None and burst < 1:
            raise ValueError(f"{setting}_BURST must be at least 1, not {burst}")
        return cls(count, number * _UNITS[match.group(3)], count if burst is None else burst)

    @property
    def per_second(self) -> float:
        """Tokens added to a bucket each second."""
        return self.count / self.seconds


def limiter_from(rate: str | None, burst: int | None) -> "RateLimiter | None":
    """The limiter the settings ask for (None when ``rate`` is unset); raises ValueError."""
    if rate is None:
        if burst is not None:
            raise ValueError("COVREQ_RATE_LIMIT_BURST needs COVREQ_RATE_LIMIT (the rate it bursts above)")
        return None
    return RateLimiter(Rate.parse(rate, burst))


class _Bucket:
    __slots__ = ("tokens", "at", "stored")

    def __init__(self, tokens: float, at: float) -> None:
        self.tokens, self.at, self.stored = tokens, at, at


class RateLimiter:
    """The buckets of one worker: :meth:`take` answers whether a client may send a request now.

    A bucket left alone for ``fill`` seconds (``burst / rate``) is full again, so forgetting it
    then changes nothing. The table keeps an entry ``2 * fill`` seconds from when it was (again)
    stored, and a bucket is stored again once ``fill`` seconds have passed since: an entry is never
    forgotten less than ``fill`` seconds after its last use, and a busy client costs one store per
    ``fill`` seconds, not one per request.
    """

    def __init__(self, rate: Rate, max_clients: int = MAX_CLIENTS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rate, self._clock, self._per_second = rate, clock, rate.per_second
        self._burst, self._fill = float(rate.burst), rate.burst / rate.per_second
        self._buckets: TTLCache[tuple[str, ...], _Bucket] = TTLCache(max_clients, 2 * self._fill, timer=clock)

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, client: tuple[str, ...]) -> float:
        """Spend one of ``client``'s tokens: 0 when it may go ahead, else the seconds until it may."""
        now = self._clock()
        try:
            bucket = self._buckets[client]
        except KeyError:
            bucket = self._buckets[client] = _Bucket(self._burst, now)
        else:
            bucket.tokens = min(self._burst, bucket.tokens + (now - bucket.at) * self._per_second)
            bucket.at = now
            if now - bucket.stored >= self._fill:
                bucket.stored = now
                self._buckets[client] = bucket
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self._per_second


def client_of(scope: Scope) -> tuple[str, ...]:
    """Whom a request counts against: its credentials' kind, name and subject (an API key's name, a
    JWT's issuer and ``sub``, a SMART client), or else the address it came from (as uvicorn gives it:
    behind a trusted proxy, the forwarded one)."""
    caller: Caller = scope.get("state", {}).get("caller", ANONYMOUS)
    if caller.kind != ANONYMOUS.kind:
        return (caller.kind, caller.name, caller.subject or "")
    address = scope.get("client")
    return ("address", str(address[0]) if address else "")


class RateLimit:
    """ASGI middleware: 429 with ``Retry-After`` for a client past its rate.

    ``refuse(path, status, message)`` builds the response in the path's API shape; ``counted(kind)``
    is told of each refusal, with the kind of client refused (the metrics).
    """

    def __init__(self, app: ASGIApp, limiter: RateLimiter, refuse: Callable[[str, int, str], Response],
                 counted: Callable[[str], None]) -> None:
        self.app, self.limiter, self.refuse, self.counted = app, limiter, refuse, counted

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in PROBES:
            await self.app(scope, receive, send)
            return
        client = client_of(scope)
        wait = self.limiter.take(client)
        if not wait:
            await self.app(scope, receive, send)
            return
        self.counted(client[0])
        rate = self.limiter.rate
        seconds = max(1, math.ceil(wait))
        response = self.refuse(scope["path"], 429, f"rate limit of {rate.count} requests per {rate.seconds:g} "
                                                   f"seconds reached; retry after {seconds} s")
        response.headers["Retry-After"] = str(seconds)
        await response(scope, receive, send)
