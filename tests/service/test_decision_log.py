"""Decision-log shipping (issue 26 item 8): audit records POSTed to a loopback sink that answers 503,
goes away and comes back; delivered in order, as written to the audit file, none lost while the
buffer holds them."""
from __future__ import annotations

import json
import logging
import os
import signal
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import httpx
import pytest
from prometheus_client import CollectorRegistry

from decision_sink import Sink
from serving import served, wait_until
from service import decision_log
from service.audit import AuditLog
from service.decision_log import DecisionLog, SinkConfig

FIXTURE_RULES = Path(__file__).resolve().parent / "fixtures" / "rules"
FIXTURE_PAYERS = Path(__file__).resolve().parent / "fixtures" / "payers.yaml"
V1_REQUEST = {"payer": "acme", "place_of_service": "22", "services": [{"code": "15823"}]}


@pytest.fixture()
def sink() -> Iterator[Sink]:
    running = Sink()
    running.up()
    yield running
    running.down()


@pytest.fixture(autouse=True)
def quick_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """Backoffs of at most 0.3 s, so that a test sees several retries within a second or two."""
    monkeypatch.setattr(decision_log, "MAX_BACKOFF", 0.3)
    monkeypatch.setattr(decision_log, "FIRST_BACKOFF", 0.1)


def _value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


def test_records_sent_while_the_sink_is_down_arrive_in_order_when_it_returns(
        make_client: Callable[..., Any], sink: Sink, tmp_path: Path) -> None:
    token = tmp_path / "sink-token"
    token.write_text("s3cret-sink-token\n")
    with make_client(decision_log_url=sink.url, decision_log_token_file=token) as client:
        registry = client.app.state.metrics.registry
        assert client.post("/v1/requirements", json=V1_REQUEST).status_code == 200
        wait_until(lambda: len(sink.lines) == 1)
        sink.status = 503  # the sink answers, but refuses
        for _ in range(3):
            assert client.post("/v1/requirements", json=V1_REQUEST).status_code == 200
        wait_until(lambda: _value(registry, "covreq_decision_log_post_failures_total", reason="status") >= 2)
        sink.down()  # the sink is gone: connections refused
        for _ in range(3):
            assert client.post("/v1/requirements", json=V1_REQUEST).status_code == 200
        wait_until(lambda: _value(registry, "covreq_decision_log_post_failures_total", reason="network") >= 2)
        assert len(sink.lines) == 1
        sink.status = 200
        sink.up()
        wait_until(lambda: len(sink.lines) >= 7)
        assert _value(registry, "covreq_decision_log_sent_total") == 7
    written = (tmp_path / "audit.jsonl").read_bytes().splitlines(keepends=True)
    assert sink.lines == written  # every record, as written to the file, in order, once
    assert len({json.loads(line)["id"] for line in written}) == 7
    assert all(post["Content-Encoding"] == "gzip" and post["Content-Type"] == "application/x-ndjson"
               and post["Authorization"] == "Bearer s3cret-sink-token" for post in sink.posts)


def test_covreq_serve_ships_its_records_and_delivers_the_last_ones_on_sigterm(sink: Sink, tmp_path: Path) -> None:
    env = {"PYTHONPATH": os.getcwd(), "COVREQ_PAYERS": str(FIXTURE_PAYERS), "COVREQ_DECISION_LOG_URL": sink.url}
    with served(tmp_path, "--rules", str(FIXTURE_RULES), env=env) as service:
        for _ in range(3):
            assert httpx.post(service.base + "/v1/requirements", json=V1_REQUEST).status_code == 200
        wait_until(lambda: len(sink.lines) == 3)
        sink.status = 503  # the last records wait in the buffer...
        assert httpx.post(service.base + "/v1/requirements", json=V1_REQUEST).status_code == 200
        wait_until(lambda: len(sink.posts) >= 5)
        sink.status = 200  # ...and go out during the shutdown
        service.process.send_signal(signal.SIGTERM)
        service.process.wait(timeout=30)
    assert sink.lines == (tmp_path / "audit.jsonl").read_bytes().splitlines(keepends=True)
    assert len(sink.lines) == 4


def _config(url: str, **overrides: Any) -> SinkConfig:
    return SinkConfig(**{"url": url, "headers": {}, "max_records": 100, "max_bytes": 1_000_000,
                         "shutdown_seconds": 2.0, **overrides})


def test_a_full_buffer_drops_the_oldest_records_counts_and_logs_them(sink: Sink, caplog) -> None:
    sink.down()
    registry = CollectorRegistry()
    shipper = DecisionLog(_config(sink.url, max_records=5, max_bytes=60), registry)
    shipper.start()
    lines = [b'{"id": "%02d"}\n' % n for n in range(9)]  # 13 bytes each: 4 fit in 60 bytes
    with caplog.at_level(logging.WARNING, logger="covreq.decision_log"):
        for line in lines:
            shipper.offer(line)
    assert shipper.pending() == 4
    assert _value(registry, "covreq_decision_log_dropped_total", reason="overflow") == 5
    assert [r.event for r in caplog.records if r.levelno == logging.WARNING][:1] == ["decision-log-overflow"]
    sink.up()
    wait_until(lambda: len(sink.lines) == 4)
    assert sink.lines == lines[5:]
    shipper.close()


def test_shutdown_delivers_what_is_left_and_counts_what_it_cannot(sink: Sink) -> None:
    registry = CollectorRegistry()
    shipper = DecisionLog(_config(sink.url), registry)
    shipper.start()
    for n in range(3):
        shipper.offer(b'{"id": "%d"}\n' % n)
    shipper.close()
    assert len(sink.lines) == 3
    sink.down()
    registry = CollectorRegistry()
    stuck = DecisionLog(_config(sink.url, shutdown_seconds=0.5), registry)
    stuck.start()
    stuck.offer(b'{"id": "late"}\n')
    started = time.monotonic()
    stuck.close()
    assert time.monotonic() - started < 2.0
    assert _value(registry, "covreq_decision_log_dropped_total", reason="shutdown") == 1


def test_strict_audit_answers_while_the_sink_is_down(make_client: Callable[..., Any], sink: Sink) -> None:
    sink.down()
    with make_client(decision_log_url=sink.url, strict_audit=True) as client:
        assert client.post("/v1/requirements", json=V1_REQUEST).status_code == 200  # the file took it
        assert client.get("/readyz").json()["status"] == "ready"


class _Collected:
    """A stand-in sink that keeps what it is offered."""

    def __init__(self) -> None:
        self.lines: list[bytes] = []

    def offer(self, line: bytes) -> None:
        self.lines.append(line)


@pytest.mark.parametrize("strict", [False, True])
def test_the_sink_gets_a_record_for_every_answer_given(tmp_path: Path, strict: bool) -> None:
    collected = _Collected()
    audit = AuditLog(tmp_path / "audit.jsonl", strict, collected)  # type: ignore[arg-type]
    assert audit.write({"api": "v1", "status": 200})
    assert collected.lines == (tmp_path / "audit.jsonl").read_bytes().splitlines(keepends=True)
    audit.path = tmp_path / "gone" / "audit.jsonl"  # the file can no longer be written
    assert not audit.write({"api": "v1", "status": 200})
    # without strict audit the answer goes out, so the sink gets its record; under strict audit it is withheld
    assert len(collected.lines) == (1 if strict else 2)


def test_an_unusable_sink_setting_stops_the_start(make_client: Callable[..., Any], tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="COVREQ_DECISION_LOG_URL"):
        make_client(decision_log_url="ftp://logs.example.org")
    with pytest.raises(ValueError, match="COVREQ_DECISION_LOG_TOKEN_FILE"):
        make_client(decision_log_url="https://logs.example.org", decision_log_token_file=tmp_path / "missing")
