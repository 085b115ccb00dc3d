"""The attacker's suite, connections: slow, many, abandoned or oversized connections to a real
server on loopback cost bounded descriptors, time and log lines; answers are never given
without their audit record when the operator asks for a strict audit.

Regression tests are named after the reports of issue 11 they close.
"""
from __future__ import annotations

import io
import json
import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest
from serving import Served, free_port, served, wait_until

from service.logs import REPEAT_LIMIT, RepeatFilter, configure

FIXTURE_RULES = Path(__file__).resolve().parent / "fixtures" / "rules"
REQUEST = {"payer": "acme", "place_of_service": "22", "services": [{"code": "15823"}]}
MAX_CONNECTIONS, REQUEST_TIMEOUT = 20, 1.5


class Server:
    """The service with small connection limits and a strict audit, its audit file in a folder a
    test may take away."""

    def __init__(self, running: Served, audit_folder: Path) -> None:
        self.running, self.audit_folder = running, audit_folder
        self.base, self.log = running.base, running.log

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.running.port), timeout=5)

    def events(self) -> list[dict[str, Any]]:
        return self.running.events()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("server")
    (folder / "audit").mkdir()
    with served(folder, "--rules", str(FIXTURE_RULES), "--max-connections", str(MAX_CONNECTIONS),
                "--request-timeout", str(REQUEST_TIMEOUT), "--keep-alive-timeout", "1",
                "--max-header-bytes", "4096", "--strict-audit",
                env={"COVREQ_AUDIT": str(folder / "audit" / "audit.jsonl")}) as running:
        yield Server(running, folder / "audit")


def _closed_within(sock: socket.socket, seconds: float) -> bool:
    """Whether the server closes ``sock`` (reads end) within ``seconds``."""
    sock.settimeout(seconds)
    try:
        while True:
            if sock.recv(65536) == b"":
                return True
    except (socket.timeout, TimeoutError):
        return False
    except ConnectionResetError:
        return True


def test_regression_slow_header_connections_exhaust_file_descriptors(server: Server) -> None:
    slow = server.connect()
    slow.sendall(b"POST /v1/requirements HTTP/1.1\r\nHost: x\r\n")  # and then nothing more
    began = time.monotonic()
    assert _closed_within(slow, REQUEST_TIMEOUT + 3)
    assert REQUEST_TIMEOUT - 0.2 <= time.monotonic() - began
    assert any(e.get("event") == "request-timeout" for e in server.events())


def test_a_body_sent_a_byte_at_a_time_is_cut_off_too(server: Server) -> None:
    slow = server.connect()
    slow.sendall(b"POST /v1/requirements HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{")
    began = time.monotonic()
    closed = False
    while time.monotonic() - began < REQUEST_TIMEOUT + 3:
        try:
            slow.sendall(b" ")
        except OSError:
            closed = True
            break
        if _closed_within(slow, 0.2):
            closed = True
            break
    assert closed and time.monotonic() - began < REQUEST_TIMEOUT + 3


# Connections past the cap (issue 24, item 8) -------------------------------------------------------

CAP = 50


@pytest.fixture(scope="module")
def capped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The service with a cap of 50 connections and a request timeout long enough that nothing held
    by a test times out while it runs: only the cap acts."""
    folder = tmp_path_factory.mktemp("capped")
    (folder / "audit").mkdir()
    with served(folder, "--rules", str(FIXTURE_RULES), "--max-connections", str(CAP), "--request-timeout", "60",
                env={"COVREQ_AUDIT": str(folder / "audit" / "audit.jsonl")}) as running:
        yield Server(running, folder / "audit")


def _under_way(server: Server) -> socket.socket:
    """A connection whose request is being served: its head is read and the service waits for the
    body (``100 Continue`` says so), so the connection is busy and cannot be reaped."""
    sock = server.connect()
    sock.sendall(b"POST /v1/requirements HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 100\r\nExpect: 100-continue\r\n\r\n")
    assert sock.recv(100).startswith(b"HTTP/1.1 100")
    return sock


def test_regression_idle_connections_reset_everything(capped: Server) -> None:
    held = []
    try:
        for _ in range(2 * CAP):  # twice the cap of connections that never finish their headers
            sock = capped.connect()
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            held.append(sock)
        began = time.monotonic()
        with httpx.Client(base_url=capped.base, timeout=10) as client:  # a new connection each time
            for _ in range(5):
                assert client.get("/healthz", headers={"Connection": "close"}).status_code == 200
                assert client.post("/v1/requirements", json=REQUEST, headers={"Connection": "close"}).status_code == 200
        assert time.monotonic() - began < 10, "answered at once, not once the held connections time out"
        closed = sum(_closed_within(sock, 0.05) for sock in held[:CAP])
        assert closed == CAP, "the oldest idle connections were closed to admit the new ones"
    finally:
        for sock in held:
            sock.close()
    evicted = [e for e in capped.events() if e.get("event") == "connection-evicted"]
    assert 1 <= len(evicted) <= REPEAT_LIMIT + 1, "a flood of evictions is a few log lines"


def test_regression_busy_connections_past_the_cap_get_a_503_with_retry_after(capped: Server) -> None:
    held = []
    try:
        held += [_under_way(capped) for _ in range(CAP)]
        for _ in range(3):
            refused = httpx.post(f"{capped.base}/v1/requirements", json=REQUEST, timeout=10)
            assert refused.status_code == 503 and refused.headers["Retry-After"] == "1"
            assert "connections" in refused.json()["error"]["message"]
            assert refused.headers["Connection"] == "close"
            cds = httpx.post(f"{capped.base}/cds-services/order-sign-crd", json={}, timeout=10)
            assert cds.status_code == 503 and cds.json()["resourceType"] == "OperationOutcome"
            assert httpx.get(f"{capped.base}/healthz", timeout=10).status_code == 200, "liveness stays answered"
        assert all(not _closed_within(sock, 0.01) for sock in held), "requests under way are never cut"
    finally:
        for sock in held:
            sock.close()
    assert httpx.post(f"{capped.base}/v1/requirements", json=REQUEST, timeout=10).status_code == 200


def test_oversized_headers_are_a_400_whether_sent_at_once_or_in_pieces(server: Server) -> None:
    response = httpx.get(f"{server.base}/healthz", headers={"X-Padding": "p" * 8000})
    assert response.status_code == 400
    sock = server.connect()
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
    sock.settimeout(3)  # a server that kept waiting for the rest would time this out: a failure
    try:
        for _ in range(20):  # 10 KB of headers in pieces; the server answers once 4 KB have come
            sock.sendall(b"X-Padding: " + b"p" * 500 + b"\r\n")
            time.sleep(0.02)
        answer = sock.recv(100)
    except (BrokenPipeError, ConnectionResetError):  # closed while we were still sending: refused
        answer = b"HTTP/1.1 400 (connection closed)"
    finally:
        sock.close()
    assert answer.startswith(b"HTTP/1.1 400")
    fits = httpx.post(f"{server.base}/v1/requirements", json={**REQUEST, "diagnoses": ["H02.831"] * 900})
    assert fits.status_code == 200, "a large body is not a large head"


def test_regression_client_disconnects_logged_as_500_with_tracebacks(server: Server) -> None:
    sock = server.connect()
    sock.sendall(b"POST /v1/requirements HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 1000\r\n\r\n{\"payer\": ")
    time.sleep(0.2)
    sock.close()
    hung_up = wait_until(lambda: [e for e in server.events() if e.get("event") == "request" and e.get("status") == 499])
    assert hung_up[0]["path"] == "/v1/requirements"
    assert "Traceback" not in server.log.read_text()
    assert not [e for e in server.events() if e.get("status") == 500]


def test_regression_keep_alive_answers_with_no_audit_record(server: Server) -> None:
    with httpx.Client(base_url=server.base) as client:  # one keep-alive connection
        assert client.post("/v1/requirements", json=REQUEST).status_code == 200
        for name in os.listdir(server.audit_folder):
            os.unlink(server.audit_folder / name)
        server.audit_folder.rmdir()  # records can no longer be written
        try:
            withheld = client.post("/v1/requirements", json=REQUEST)
            assert withheld.status_code == 503
            assert withheld.json()["error"]["message"].startswith("the audit record of this call could not be written")
            cds = client.post("/cds-services/order-sign-crd", json={
                "hook": "order-sign", "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
                "context": {"patientId": "p", "userId": "Practitioner/1", "draftOrders": {"resourceType": "Bundle"}},
                "extension": {"davinci-crd.configuration": {"coverage-information": False}}})
            assert cds.status_code in (400, 503)  # refused as malformed, or withheld: never answered unaudited
            ready = client.get("/readyz")
            assert ready.status_code == 503 and ready.json()["status"] == "unready"
            assert ready.json()["audit"]["failing"] is True
        finally:
            server.audit_folder.mkdir()
        assert client.post("/v1/requirements", json=REQUEST).status_code == 200
        assert client.get("/readyz").json()["status"] == "ready"


def test_regression_service_starts_with_an_unusable_audit_path(tmp_path: Path) -> None:
    env = {**os.environ, "COVREQ_AUDIT": str(tmp_path / "no-such-folder" / "audit.jsonl")}
    result = subprocess.run([sys.executable, "-m", "covreq", "serve", "--rules", str(FIXTURE_RULES),
                             "--port", str(free_port())], capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 1
    assert "the audit file" in result.stderr and "cannot be written: No such file or directory" in result.stderr
    assert "Traceback" not in result.stderr


# Log lines --------------------------------------------------------------------------------------

def test_regression_accept_errors_wrote_300_mb_of_log() -> None:
    clock = [0.0]
    keep = RepeatFilter(limit=REPEAT_LIMIT, window=60.0, clock=lambda: clock[0])
    error = logging.makeLogRecord({"name": "asyncio", "levelno": logging.ERROR, "levelname": "ERROR",
                                   "msg": "socket.accept() out of system resource"})
    written = [keep.filter(logging.makeLogRecord(vars(error))) for _ in range(100_000)]
    assert written.count(True) == REPEAT_LIMIT + 1
    clock[0] = 61.0
    later = logging.makeLogRecord(vars(error))
    assert keep.filter(later) and later.suppressed == 100_000 - REPEAT_LIMIT - 1
    info = logging.makeLogRecord({"name": "covreq.access", "levelno": logging.INFO, "msg": "POST / 200"})
    assert all(keep.filter(info) for _ in range(1000)), "access lines are never dropped"


@pytest.fixture()
def configured_logs(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    """logs.configure() writing to a buffer; the logging setup is restored afterwards."""
    buffer = io.StringIO()
    monkeypatch.setattr(sys, "stderr", buffer)
    root, ours = logging.getLogger(), logging.getLogger("covreq")
    saved = (root.handlers[:], root.level, ours.handlers[:], ours.level, ours.propagate)
    configure(json_logs=True)
    yield buffer
    root.handlers[:], ours.handlers[:] = saved[0], saved[2]
    root.setLevel(saved[1])
    ours.setLevel(saved[3])
    ours.propagate = saved[4]


def test_regression_unhandled_tracebacks_are_plain_text(configured_logs: io.StringIO) -> None:
    try:
        raise RuntimeError("a bug")
    except RuntimeError:
        logging.getLogger("uvicorn.error").exception("Exception in ASGI application")
    (line,) = configured_logs.getvalue().splitlines()
    entry = json.loads(line)
    assert entry["logger"] == "uvicorn.error" and entry["level"] == "error"
    assert "RuntimeError: a bug" in entry["exception"]
