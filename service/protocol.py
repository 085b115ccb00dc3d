"""uvicorn's HTTP/1.1 protocol with the connection limits a public service needs.

uvicorn bounds idle keep-alive connections but not a client that sends its headers or body a byte
at a time, and it accepts connections until the process runs out of file descriptors. Each
connection here must deliver a whole request (headers and body) within ``request_timeout``
seconds of opening or of its previous answer, its request line and headers may hold at most
``max_header_bytes``, and a connection past ``max_connections`` is closed at once, before it
holds a descriptor for long.
"""
from __future__ import annotations

import asyncio
import functools
import logging
from typing import Any, Callable

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger("covreq.connections")


class GuardedH11Protocol(H11Protocol):
    """H11Protocol with a deadline for each request to arrive whole and a cap on connections."""

    def __init__(self, *args: Any, request_timeout: float, max_connections: int, max_header_bytes: int,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.request_timeout, self.max_connections = request_timeout, max_connections
        self.max_header_bytes = max_header_bytes
        self._deadline: asyncio.TimerHandle | None = None
        self._head, self._tail = 0, b""  # bytes of the request head read so far; the last three read

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Take the connection, or close it at once when the cap is reached."""
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            log.warning("connection refused: too many open", extra={
                "event": "connection-refused", "open": len(self.connections), "limit": self.max_connections})
            transport.close()
            return
        self._arm()

    def data_received(self, data: bytes) -> None:
        """Read as uvicorn does, after checking the size of the request line and headers (h11 bounds
        only what arrives in pieces); a request read whole is no longer on the clock."""
        if self.conn.their_state is h11.IDLE and self._too_long_head(data):
            self.send_400_response(f"Request line and headers larger than {self.max_header_bytes} bytes")
            return
        super().data_received(data)
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

    def _expire(self) -> None:
        self._deadline = None
        if not self.transport.is_closing() and self.conn.their_state not in (h11.DONE, h11.MUST_CLOSE):
            log.info("connection closed: request not received in time", extra={
                "event": "request-timeout", "seconds": self.request_timeout})
            self.transport.close()


def guarded(request_timeout: float, max_connections: int, max_header_bytes: int) -> Callable[..., GuardedH11Protocol]:
    """The protocol factory to give uvicorn as ``http=`` (picklable, for worker processes)."""
    return functools.partial(GuardedH11Protocol, request_timeout=request_timeout,
                             max_connections=max_connections, max_header_bytes=max_header_bytes)
