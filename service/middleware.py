"""ASGI plumbing: refuse oversized bodies (413) and requests past the connection cap (503); log (and
hand to the metrics) every finished request."""
from __future__ import annotations

import logging
import time
from typing import Callable

from starlette.requests import ClientDisconnect
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.logs import caller_text
from service.protocol import OVER_CAP

log = logging.getLogger("covreq.access")
#: The status logged for a request whose client went away before it was answered (nginx's 499).
CLIENT_CLOSED = 499


class _TooLarge(Exception):
    pass


class StartWatch:
    """An ASGI ``send`` that passes every message on and notes whether the response has started
    (``started``): until then a middleware may still answer in its place."""

    def __init__(self, send: Send) -> None:
        self.send, self.started = send, False

    async def __call__(self, message: Message) -> None:
        self.started = self.started or message["type"] == "http.response.start"
        await self.send(message)


class BodyLimit:
    """Answers 413 when a body declares or streams more than ``max_bytes``.

    ``refuse(path)`` builds the 413 response, so each API family keeps its own error shape.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, refuse: Callable[[str], Response]) -> None:
        self.app, self.max_bytes, self.refuse = app, max_bytes, refuse

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"0")
        if not declared.isdigit() or int(declared) > self.max_bytes:
            await self.refuse(scope["path"])(scope, receive, send)
            return
        received = 0
        watch = StartWatch(send)

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise _TooLarge
            return message

        try:
            await self.app(scope, limited_receive, watch)
        except _TooLarge:
            if not watch.started:
                await self.refuse(scope["path"])(scope, receive, send)


class ConnectionCap:
    """Answers 503 with ``Retry-After`` a request on a connection taken past the connection cap
    (service/protocol.py), but for the ``exempt`` paths (the liveness probe); the connection is
    closed after its answer either way.

    ``refuse(path)`` builds the 503 response, so each API family keeps its own error shape.
    """

    #: Seconds a refused caller is asked to wait: requests under way finish within milliseconds.
    RETRY_AFTER = 1

    def __init__(self, app: ASGIApp, refuse: Callable[[str], Response], exempt: frozenset[str]) -> None:
        self.app, self.refuse, self.exempt = app, refuse, exempt

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope.get("extensions", {}).get(OVER_CAP):
            await self.app(scope, receive, send)
            return

        exempt = scope["path"] in self.exempt
        added = [(b"connection", b"close")] + ([] if exempt else [(b"retry-after", str(self.RETRY_AFTER).encode())])

        async def closing_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *added]}
            await send(message)

        await (self.app if exempt else self.refuse(scope["path"]))(scope, receive, closing_send)


class AccessLog:
    """Logs method, path, status, duration and the answering rule set; never bodies.

    ``observe(scope, status, seconds, ruleset)``, when given, is called too (the metrics count
    requests there, the tracing makes their spans).
    """

    def __init__(self, app: ASGIApp, header: str,
                 observe: Callable[[Scope, int, float, str], None] | None = None) -> None:
        self.app, self.header, self.observe = app, header.lower().encode(), observe

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began = time.perf_counter()
        status, ruleset = 500, ""

        async def observing_send(message: Message) -> None:
            nonlocal status, ruleset
            if message["type"] == "http.response.start":
                status = message["status"]
                ruleset = dict(message.get("headers", [])).get(self.header, b"").decode()
            await send(message)

        try:
            await self.app(scope, receive, observing_send)
        except ClientDisconnect:  # the caller hung up before its body was read: nothing to answer
            status = CLIENT_CLOSED
        finally:
            seconds = time.perf_counter() - began
            method, path = caller_text(scope["method"]), caller_text(scope["path"])
            log.info("%s %s %s", method, path, status, extra={
                "event": "request", "method": method, "path": path,
                "status": status, "ms": round(seconds * 1000, 2), "ruleset": ruleset})
            if self.observe:
                self.observe(scope, status, seconds, ruleset)
