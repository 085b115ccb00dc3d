"""uvicorn's HTTP/1.1 protocol with the connection limits a public service needs.

uvicorn bounds idle keep-alive connections but not a client that sends its headers or body a byte
at a time, and it accepts connections until the process runs out of file descriptors. Each
connection here must deliver a whole request (headers and body) within ``request_timeout``
seconds of opening or of its previous answer, and its request line and headers may hold at most
``max_header_bytes``.

A process holds at most ``max_connections`` connections. A connection that opens past the cap
closes the oldest connection that is waiting for a request (headers not yet complete, or idle
between keep-alive requests), so that idle and slow clients can never lock new callers out; a
request under way is never cut. When every connection has a request under way, the new one is
taken as one of a small reserve and its request answered at once with 503 and ``Retry-After``
(``/healthz`` is still answered, so liveness probes hold under load); past the reserve too, it is
closed at once.
"""
from __future__ import annotations

import asyncio
import functools
import logging
from collections import OrderedDict
from typing import Any, Callable

import h11
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger("covreq.connections")
#: The ASGI scope extension that marks a request on a connection past the cap (service/middleware.py
#: answers it with 503).
OVER_CAP = "covreq.over_cap"


def reserve_of(max_connections: int) -> int:
    """Connections taken past the cap only to answer 503 (or ``/healthz``): a tenth of the cap, at least 8."""
    return max(8, max_connections // 10)


class Gate:
    """The connections of one process that wait for a request, oldest first: the ones a new
    connection may close when the cap is reached. (Picklable, for worker processes: a copy starts
    empty.)"""

    def __init__(self, max_connections: int) -> None:
        self.max_connections, self.reserve = max_connections, reserve_of(max_connections)
        self._waiting: OrderedDict[GuardedH11Protocol, None] = OrderedDict()

    def __getstate__(self) -> dict[str, Any]:
        return {"max_connections": self.max_connections}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["max_connections"])  # type: ignore[misc]

    def waiting(self, connection: GuardedH11Protocol) -> None:
        """``connection`` waits for a request from now on (it becomes the newest waiting)."""
        self._waiting.pop(connection, None)
        self._waiting[connection] = None

    def busy(self, connection: GuardedH11Protocol) -> None:
        """``connection`` has a request under way, or is gone: never closed for a newer one."""
        self._waiting.pop(connection, None)

    def oldest_waiting(self) -> GuardedH11Protocol | None:
        """The connection waiting longest for a request, taken off the list; None when none waits."""
        if not self._waiting:
            return None
        return self._waiting.popitem(last=False)[0]


class GuardedH11Protocol(H11Protocol):
    """H11Protocol with a deadline for each request to arrive whole and a cap on connections."""

    def __init__(self, *args: Any, request_timeout: float, gate: Gate, max_header_bytes: int,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.request_timeout, self.gate = request_timeout, gate
        self.max_header_bytes = max_header_bytes
        self._deadline: asyncio.TimerHandle | None = None
        self._head, self._tail = 0, b""  # bytes of the request head read so far; the last three read

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Take the connection: past the cap, in the place of the oldest waiting one, else on the
        reserve (its requests get 503), else not at all."""
        super().connection_made(transport)
        if len(self.connections) > self.gate.max_connections and not self._evict_oldest():
            if len(self.connections) > self.gate.max_connections + self.gate.reserve:
                log.warning("connection refused: too many open", extra={
                    "event": "connection-refused", "open": len(self.connections),
                    "limit": self.gate.max_connections})
                transport.close()
                return
            self.app = functools.partial(_over_cap, self.app)
        self._arm()

    def _evict_oldest(self) -> bool:
        """Close the connection waiting longest for a request; False when none waits."""
        oldest = self.gate.oldest_waiting()
        while oldest is not None and oldest.transport.is_closing():
            oldest = self.gate.oldest_waiting()
        if oldest is None:
            return False
        log.warning("connection closed: the oldest waiting for a request, to admit a new one", extra={
            "event": "connection-evicted", "limit": self.gate.max_connections})
        oldest.transport.close()
        return True

    def data_received(self, data: bytes) -> None:
        """Read as uvicorn does, after checking the size of the request line and headers (h11 bounds
        only what arrives in pieces); a request read whole is no longer on the clock."""
        if self.conn.their_state is h11.IDLE and self._too_long_head(data):
            self.send_400_response(f"Request line and headers larger than {self.max_header_bytes} bytes")
            return
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:
            self.gate.busy(self)
        if self.conn.their_state in (h11.DONE, h11.MUST_CLOSE, h11.CLOSED) and self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def on_response_complete(self) -> None:
        """After an answer the next request on the connection has its own deadline."""
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        """Forget the deadline of a closed connection."""
        self.gate.busy(self)
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        super().connection_lost(exc)

    def _too_long_head(self, data: bytes) -> bool:
        window = self._tail + data
        end = window.find(b"\r\n\r\n")
        self._head += len(data) if end < 0 else max(0, end + 4 - len(self._tail))
        self._tail = window[-3:]
        return self._head > self.max_header_bytes

    def _arm(self) -> None:
        self._head, self._tail = 0, b""
        if self._deadline is not None:
            self._deadline.cancel()
        self._deadline = self.loop.call_later(self.request_timeout, self._expire)
        if self.conn.their_state is h11.IDLE:  # not a pipelined request already under way
            self.gate.waiting(self)

    def _expire(self) -> None:
        self._deadline = None
        if not self.transport.is_closing() and self.conn.their_state not in (h11.DONE, h11.MUST_CLOSE):
            log.info("connection closed: request not received in time", extra={
                "event": "request-timeout", "seconds": self.request_timeout})
            self.transport.close()


async def _over_cap(app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
    """``app`` with the request marked as one past the connection cap."""
    scope.setdefault("extensions", {})[OVER_CAP] = True
    await app(scope, receive, send)


def guarded(request_timeout: float, max_connections: int, max_header_bytes: int) -> Callable[..., GuardedH11Protocol]:
    """The protocol factory to give uvicorn as ``http=`` (picklable, for worker processes)."""
    return functools.partial(GuardedH11Protocol, request_timeout=request_timeout,
                             gate=Gate(max_connections), max_header_bytes=max_header_bytes)
