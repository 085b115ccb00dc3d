"""The connection cap's choices (service/protocol.py), on protocol objects with fake transports:
which connection a new one displaces, which are never displaced, the reserve and what lies past it."""
from __future__ import annotations

import asyncio
from typing import Any, Iterator

import pytest
from uvicorn.config import Config
from uvicorn.server import ServerState

from service.protocol import OVER_CAP, GuardedH11Protocol, guarded, reserve_of

CAP = 10


class FakeTransport:
    """Enough of an asyncio transport for the protocol: records whether it was closed."""

    def __init__(self) -> None:
        self.closed = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def write(self, data: bytes) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


@pytest.fixture()
def connect() -> Iterator[Any]:
    """``connect()`` opens one more connection to one server and returns its protocol and transport."""
    async def app(scope: Any, receive: Any, send: Any) -> None:
        pass
    config = Config(app, log_config=None)
    config.load()
    loop = asyncio.new_event_loop()
    state, factory = ServerState(), guarded(30.0, CAP, 16_384)

    def opened() -> tuple[GuardedH11Protocol, FakeTransport]:
        protocol = factory(config=config, server_state=state, app_state={}, _loop=loop)
        transport = FakeTransport()
        protocol.connection_made(transport)  # type: ignore[arg-type]
        return protocol, transport
    yield opened
    for task in state.tasks:  # the requests' tasks never ran: cancel them
        task.cancel()
    loop.run_until_complete(asyncio.gather(*state.tasks, return_exceptions=True))
    loop.close()


def _over_cap(protocol: GuardedH11Protocol) -> bool:
    scope: dict[str, Any] = {"type": "lifespan"}  # passed through by uvicorn's own middleware
    asyncio.run(protocol.app(scope, None, None))
    return bool(scope.get("extensions", {}).get(OVER_CAP))


def test_a_connection_past_the_cap_displaces_the_oldest_waiting_one(connect: Any) -> None:
    opened = [connect() for _ in range(CAP)]
    opened[0][0].data_received(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")  # a request under way
    opened[1][0].data_received(b"GET /healthz HTTP/1.1\r\n")  # headers coming slowly: still waiting
    newcomer, transport = connect()
    assert [t.closed for _, t in opened[:3]] == [False, True, False], "the oldest waiting one, not the busy one"
    assert not transport.closed and not _over_cap(newcomer)


def test_with_every_connection_busy_the_reserve_answers_503_and_past_it_connections_are_closed(connect: Any) -> None:
    for _ in range(CAP):
        connect()[0].data_received(b"POST /v1/requirements HTTP/1.1\r\nHost: x\r\nContent-Length: 9\r\n\r\n")
    for _ in range(reserve_of(CAP)):
        protocol, transport = connect()
        assert not transport.closed and _over_cap(protocol)
        protocol.data_received(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")  # under way: never displaced
    _, past = connect()
    assert past.closed
