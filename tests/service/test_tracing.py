"""OpenTelemetry traces (issue 26, item 2): one span per request, sent by OTLP/HTTP to a collector
stub on loopback, with the rule set, hook, route template and decision counts, and nothing about
the patient; nothing built or sent when no collector is configured."""
from __future__ import annotations

import gzip
import json
import logging
import sys
import time
import zlib
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

pytest.importorskip("opentelemetry.sdk", reason="covreq[otel] is not installed")
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (  # noqa: E402
    ExportTraceServiceRequest, ExportTraceServiceResponse)
from fastapi.testclient import TestClient  # noqa: E402

from serving import free_port, served, wait_until  # noqa: E402
import loopback
from service import Settings, create_app  # noqa: E402
from service.tracing import traces_endpoint, tracing_from  # noqa: E402
from tests.service.test_service_reload import REQUEST  # noqa: E402

HERE = Path(__file__).parent
FIXTURE_RULES = HERE / "fixtures" / "rules"
FIXTURE_PAYERS = HERE / "fixtures" / "payers.yaml"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
#: Every attribute a span may carry; anything else (a URL, an address, a code) is a leak.
ALLOWED = {"http.request.method", "http.route", "http.response.status_code", "covreq.ruleset", "covreq.hook",
           "covreq.api", "covreq.decisions", "covreq.decisions.auth_needed", "covreq.decisions.no_auth",
           "covreq.decisions.conditional", "covreq.decisions.satisfied", "covreq.decisions.none"}


class Collector:
    """An OTLP/HTTP collector stub: keeps the spans POSTed to /v1/traces, with their resources."""

    def __init__(self) -> None:
        self.spans: list[dict[str, Any]] = []
        self.posts: list[dict[str, str]] = []
        collector = self

        class Handler(loopback.QuietHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                coding = self.headers.get("Content-Encoding", "")
                body = gzip.decompress(body) if coding == "gzip" else zlib.decompress(body) if coding == "deflate" else body
                collector.posts.append({"path": self.path, "type": self.headers.get("Content-Type", "")})
                request = ExportTraceServiceRequest.FromString(body)
                for resource_spans in request.resource_spans:
                    resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
                    for scope_spans in resource_spans.scope_spans:
                        for span in scope_spans.spans:
                            collector.spans.append({
                                "name": span.name, "trace_id": span.trace_id.hex(), "parent": span.parent_span_id.hex(),
                                "kind": span.kind, "start": span.start_time_unix_nano, "end": span.end_time_unix_nano,
                                "attributes": {a.key: _value(a.value) for a in span.attributes},
                                "resource": resource, "scope": scope_spans.scope.name})
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send(200, answer, {"Content-Type": "application/x-protobuf"})

        self.server = loopback.start(Handler)
        self.url = loopback.origin(self.server)

    def close(self) -> None:
        loopback.stop(self.server)


def _value(value: Any) -> Any:
    return getattr(value, value.WhichOneof("value"))


@pytest.fixture()
def collector() -> Iterator[Collector]:
    stub = Collector()
    yield stub
    stub.close()


def test_each_request_is_one_span_at_the_collector_with_counts_and_no_patient_data(
        tmp_path: Path, collector: Collector, ig_order_sign) -> None:
    """``covreq serve`` with the standard OTEL_EXPORTER_OTLP_ENDPOINT: the v1 decision, the CDS
    Hooks call and a 404 each arrive as one span; the EHR's traceparent is the v1 span's parent."""
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": collector.url, "OTEL_BSP_SCHEDULE_DELAY": "100",
           "COVREQ_PAYERS": str(FIXTURE_PAYERS)}
    call = ig_order_sign()
    with served(tmp_path, "--rules", str(FIXTURE_RULES), env=env) as service:
        parent = f"00-{TRACE_ID}-00f067aa0ba902b7-01"
        v1 = httpx.post(f"{service.base}/v1/requirements", json=REQUEST, headers={"traceparent": parent})
        cds = httpx.post(f"{service.base}/cds-services/order-sign-crd", json=call)
        missing = httpx.get(f"{service.base}/v1/policies/no-such-policy")
        assert (v1.status_code, cds.status_code, missing.status_code) == (200, 200, 404)
        spans = wait_until(lambda: len(collector.spans) >= 3 and collector.spans)
    assert {post["path"] for post in collector.posts} == {"/v1/traces"}
    assert {post["type"] for post in collector.posts} == {"application/x-protobuf"}
    by_route = {span["attributes"]["http.route"]: span for span in spans}
    assert len(spans) == 3 and len(by_route) == 3

    v1_span = by_route["/v1/requirements"]
    digest = v1.headers["x-covreq-ruleset"]
    decisions = [d["pa_needed"] for d in v1.json()["decisions"]]
    expected = {"http.request.method": "POST", "http.route": "/v1/requirements", "http.response.status_code": 200,
                "covreq.ruleset": digest, "covreq.api": "v1", "covreq.decisions": len(decisions)}
    expected.update({f"covreq.decisions.{p.replace('-', '_')}": decisions.count(p) for p in set(decisions)})
    assert v1_span["attributes"] == expected
    assert v1_span["name"] == "POST /v1/requirements" and v1_span["kind"] == 2  # SPAN_KIND_SERVER
    assert (v1_span["trace_id"], v1_span["parent"]) == (TRACE_ID, "00f067aa0ba902b7")
    assert 0 < v1_span["end"] - v1_span["start"] < 5e9
    assert v1_span["resource"]["service.name"] == "covreq" and v1_span["scope"] == "covreq.service"

    cds_span = by_route["/cds-services/{service_id}"]
    assert cds_span["attributes"]["covreq.hook"] == "order-sign"
    assert cds_span["attributes"]["covreq.api"] == "cds-hooks" and cds_span["attributes"]["covreq.decisions"] >= 1
    assert cds_span["attributes"]["covreq.ruleset"] == digest and cds_span["parent"] == ""

    assert by_route["/v1/policies/{policy_id}"]["attributes"] == {
        "http.request.method": "GET", "http.route": "/v1/policies/{policy_id}", "http.response.status_code": 404,
        "covreq.ruleset": digest}

    for span in spans:
        assert set(span["attributes"]) <= ALLOWED
        assert span["attributes"]["covreq.ruleset"] == digest
    said = json.dumps([v for span in spans for k, v in span["attributes"].items() if k != "covreq.ruleset"])
    for secret in ("15823", "77061", "no-such-policy", call["prefetch"]["patient"]["id"], call["context"]["patientId"],
                   "127.0.0.1", "Patient"):
        assert secret not in said


def test_the_covreq_setting_sends_spans_from_an_app_in_process(tmp_path: Path, collector: Collector,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """``COVREQ_OTLP_ENDPOINT`` (a collector's base URL): spans go to its /v1/traces, and what is
    left is sent when the app stops."""
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "60000")  # only the stop sends them
    app = create_app(str(FIXTURE_RULES), Settings(payers=FIXTURE_PAYERS, audit_path=tmp_path / "audit.jsonl",
                                                  otlp_endpoint=collector.url + "/"))
    with TestClient(app) as client:
        assert client.post("/v1/requirements", json=REQUEST).status_code == 200
        assert client.get("/healthz").status_code == 200  # the probes are not traced
        for garbage in ("00-zz-yy-01", "x" * 5000, "00-" + "0" * 32 + "-" + "0" * 16 + "-01\r\n"):
            assert client.get("/v1/ruleset", headers={"traceparent": garbage, "tracestate": garbage}).status_code == 200
    assert sorted(span["name"] for span in collector.spans) == ["GET /v1/ruleset"] * 3 + ["POST /v1/requirements"]
    assert {span["parent"] for span in collector.spans} == {""}  # a traceparent that is not one is ignored


def test_fastapi_own_instrumentation_stays_off_under_a_global_provider(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """FastAPI's native telemetry would trace every request once a global provider is set (as
    ``opentelemetry-instrument`` does), with ``url.query`` and exception messages: covreq keeps it off."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exported = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exported))
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", provider)
    app = create_app(str(FIXTURE_RULES), Settings(payers=FIXTURE_PAYERS, audit_path=tmp_path / "audit.jsonl"))
    with TestClient(app) as client:
        assert client.get("/v1/policies?patient=Jane+Doe").status_code == 200
        assert client.post("/v1/requirements", json=REQUEST).status_code == 200
    assert exported.get_finished_spans() == ()


def test_nothing_is_traced_unless_a_collector_is_configured(tmp_path: Path) -> None:
    assert traces_endpoint(None, {}) is None
    assert traces_endpoint("http://c:4318", {}) == "http://c:4318/v1/traces"
    assert traces_endpoint(None, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318/"}) == "http://c:4318/v1/traces"
    assert traces_endpoint(None, {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c/t",
                                  "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}) == "http://c/t"
    for off in ({"OTEL_SDK_DISABLED": "true"}, {"OTEL_TRACES_EXPORTER": "none"}):
        assert traces_endpoint("http://c:4318", {**off, "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}) is None
    assert tracing_from(None, {}) is None
    app = create_app(str(FIXTURE_RULES), Settings(payers=FIXTURE_PAYERS, audit_path=tmp_path / "audit.jsonl"))
    assert app.state.tracing is None


def test_a_collector_that_is_down_costs_spans_never_a_request(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    timeout, requests = 1, 50
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", str(timeout))
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "10")
    app = create_app(str(FIXTURE_RULES), Settings(payers=FIXTURE_PAYERS, audit_path=tmp_path / "audit.jsonl",
                                                  otlp_endpoint=f"http://127.0.0.1:{free_port()}"))
    with TestClient(app) as client:
        began = time.perf_counter()
        assert all(client.post("/v1/requirements", json=REQUEST).status_code == 200 for _ in range(requests))
        # a request that waited for the export would wait its timeout: the bound is half of that for all of
        # them, far above what the requests take on a busy machine (under a second), far below a wait each
        assert time.perf_counter() - began < requests * timeout / 2


def test_the_covreq_setting_without_the_extra_stops_the_start_and_the_standard_one_warns(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry.sdk.trace", None)  # as if covreq[otel] were not installed
    with pytest.raises(ValueError, match=r"pip install 'covreq\[otel\]'"):
        tracing_from("http://collector:4318", {})
    with caplog.at_level(logging.WARNING, logger="covreq.tracing"):
        assert tracing_from(None, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}) is None
    assert [r.event for r in caplog.records] == ["tracing-unavailable"]  # type: ignore[attr-defined]


def test_a_protocol_covreq_does_not_speak_is_said_at_start(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="covreq.tracing"):
        tracing = tracing_from("http://collector:4318", {"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"})
    assert tracing is not None and tracing.endpoint == "http://collector:4318/v1/traces"
    assert [r.event for r in caplog.records] == ["tracing-protocol"]  # type: ignore[attr-defined]
