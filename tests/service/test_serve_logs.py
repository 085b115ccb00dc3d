"""`covreq serve`'s start-up and shutdown lines (issue 26 item 3), from a real process on a free
loopback port: the start-up line names the address, scheme and rule set; SIGTERM lets a request
under way finish (its body sent after the signal) and only then writes the shutdown line, within
``COVREQ_SHUTDOWN_SECONDS``, after which a request still under way is cut."""
from __future__ import annotations

import json
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from serving import Served, served, wait_until

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGTERM")

FIXTURE_RULES = Path(__file__).resolve().parent / "fixtures" / "rules"
BODY = json.dumps({"payer": "acme", "place_of_service": "22", "services": [{"code": "15823"}]}).encode()


def start_request(running: Served) -> socket.socket:
    """A ``POST /v1/requirements`` whose headers are sent and read by the application (it asked for
    the body: ``100 Continue``), its body not yet sent."""
    sock = socket.create_connection(("127.0.0.1", running.port), timeout=10)
    sock.sendall(b"POST /v1/requirements HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                 b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(BODY))
    assert sock.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
    return sock


def listener_closed(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


def answer(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def events(running: Served, name: str) -> list[dict[str, Any]]:
    return [e for e in running.events() if e.get("event") == name]


def test_the_start_up_line_names_the_address_and_rules_and_sigterm_lets_a_request_under_way_finish(
        tmp_path: Path) -> None:
    """Regression (issue 26 item 3): nothing said where covreq listened or what it served, and
    nothing marked the end of a graceful shutdown."""
    with served(tmp_path, "--rules", str(FIXTURE_RULES)) as running:
        ruleset = httpx.get(f"{running.base}/healthz").json()["ruleset"]
        (listening,) = events(running, "listening")
        assert {k: listening[k] for k in ("url", "scheme", "host", "port", "ruleset", "rules", "workers")} == {
            "url": running.base, "scheme": "http", "host": "127.0.0.1", "port": running.port, "ruleset": ruleset,
            "rules": str(FIXTURE_RULES), "workers": 1}
        assert listening["message"] == f"listening on {running.base}, serving rule set {ruleset} from {FIXTURE_RULES}"

        sock = start_request(running)
        running.process.send_signal(signal.SIGTERM)
        wait_until(lambda: listener_closed(running.port))  # shutting down: no new connection is taken
        assert running.process.poll() is None and not events(running, "stopped")  # waits for the request
        sock.sendall(BODY)
        response = answer(sock)
        sock.close()
        assert response.startswith(b"HTTP/1.1 200 ")  # and the connection closed after it
        assert json.loads(response.partition(b"\r\n\r\n")[2])["ruleset"] == ruleset
        running.process.wait(timeout=20)
    lines = [e.get("event") for e in running.events()]
    (finished,) = [i for i, e in enumerate(running.events()) if e.get("path") == "/v1/requirements"]
    assert lines.count("stopped") == 1 and finished < lines.index("stopped")
    (stopped,) = events(running, "stopped")
    assert stopped["ruleset"] == ruleset and stopped["drain_seconds"] == 20


def test_a_request_still_under_way_after_the_shutdown_seconds_is_cut(tmp_path: Path) -> None:
    with served(tmp_path, "--rules", str(FIXTURE_RULES), env={"COVREQ_SHUTDOWN_SECONDS": "1"}) as running:
        sock = start_request(running)
        signalled = time.monotonic()
        running.process.send_signal(signal.SIGTERM)
        running.process.wait(timeout=15)
        took = time.monotonic() - signalled
        response = answer(sock)
        sock.close()
    assert 1 <= took < 8
    head, _, body = response.partition(b"\r\n\r\n")  # 503, not uvicorn's 500: the caller may retry elsewhere
    assert head.startswith(b"HTTP/1.1 503 ") and b"retry-after: 1" in head.lower(), response
    assert "stopped before this request was answered" in json.loads(body)["error"]["message"]
    messages = [(e.get("event"), e["message"]) for e in running.events()]
    cut = next(i for i, (_, m) in enumerate(messages) if m.startswith("Cancel 1 running task(s)"))
    later = [e for e, _ in messages[cut:]]
    assert later.index("request-cut") < later.index("request") < later.index("stopped"), later
