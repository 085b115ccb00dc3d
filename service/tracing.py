"""One OpenTelemetry span per request, sent by OTLP/HTTP to a collector when one is configured.

Optional (``pip install 'covreq[otel]'``): with no endpoint configured nothing is imported, built
or sent, and a request pays one ``if``. The endpoint is ``COVREQ_OTLP_ENDPOINT`` (a collector's base
URL), else the standard ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_ENDPOINT``;
``OTEL_SDK_DISABLED=true`` or ``OTEL_TRACES_EXPORTER=none`` turn tracing off. The exporter reads
the other ``OTEL_EXPORTER_OTLP_*`` variables (headers, timeout, compression, certificates) itself.

A span says what covreq did, never about whom: the route template (``/v1/policies/{policy_id}``,
not the id), method and status, the rule-set digest of the answer, the CDS hook, and how many
service lines were answered each way (``covreq.decisions.auth_needed``...). No codes, patient or
caller identifiers, addresses, URLs or bodies. The span is made when the request has been answered,
from its start and end times, with the caller's W3C ``traceparent`` as its parent when one is
sent, so covreq's span joins the EHR's trace. The probes (``/healthz``, ``/readyz``) are not traced. The provider is covreq's own, not the global one, and
FastAPI's own instrumentation is switched off (service/app.py): its spans would carry the query
string and exception messages.
"""
from __future__ import annotations

import logging
import os
import time
from typing import Any, Mapping

from starlette.types import Scope

from engine.loading.bundle import covreq_version
from service.crd.discovery import SERVICES
from service.metrics import ANSWERS_KEY, UNMATCHED, request_labels
from service.ops import PROBES

log = logging.getLogger("covreq.tracing")
#: Where OTLP/HTTP wants spans under a collector's base URL.
TRACES_PATH = "/v1/traces"
#: The instrumentation scope named in every span.
SCOPE = "covreq.service"


def traces_endpoint(configured: str | None, env: Mapping[str, str]) -> str | None:
    """The URL spans are POSTed to, or None when tracing is off."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true" or \
            env.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "none":
        return None
    if configured:
        return configured.rstrip("/") + TRACES_PATH
    if env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        return env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]
    if env.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        return env["OTEL_EXPORTER_OTLP_ENDPOINT"].rstrip("/") + TRACES_PATH
    return None


class Tracing:
    """covreq's tracer provider and the span of each answered request."""

    def __init__(self, endpoint: str, service_name: str) -> None:
        """Raises ImportError without covreq[otel] (the API alone comes with FastAPI; the SDK and
        the exporter do not)."""
        from opentelemetry import trace
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self.endpoint, self.service_name = endpoint, service_name
        self._sdk = (OTLPSpanExporter, Resource, TracerProvider, BatchSpanProcessor)
        self._propagator = TraceContextTextMapPropagator()
        self._server, self._error = trace.SpanKind.SERVER, trace.Status(trace.StatusCode.ERROR)
        self._provider: Any = None
        self._tracer: Any = None

    def start(self) -> None:
        """Build the provider and its exporter (in the worker that serves: the exporter's thread
        must not be forked)."""
        OTLPSpanExporter, Resource, TracerProvider, BatchSpanProcessor = self._sdk
        resource = Resource.create({"service.name": self.service_name, "service.version": covreq_version()})
        self._provider = TracerProvider(resource=resource)
        self._provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=self.endpoint)))
        self._tracer = self._provider.get_tracer(SCOPE)
        log.info("sending a span per request to %s", self.endpoint, extra={"event": "tracing",
                                                                             "endpoint": self.endpoint})

    def flush(self) -> None:
        """Send the spans made so far now."""
        if self._provider is not None:
            self._provider.force_flush()

    def stop(self) -> None:
        """Send what is left and stop."""
        if self._provider is not None:
            self._provider.shutdown()
            self._provider = self._tracer = None

    def record(self, scope: Scope, status: int, seconds: float, ruleset: str) -> None:
        """The span of one answered request, from ``seconds`` ago to now. A failure to make it is
        logged, never raised: the answer has been sent, and a span is not worth a worker's error."""
        if self._tracer is None or scope["path"] in PROBES:
            return
        try:
            self._record(scope, status, seconds, ruleset)
        except Exception:
            log.exception("no span for this request", extra={"event": "span-failed"})

    def _record(self, scope: Scope, status: int, seconds: float, ruleset: str) -> None:
        end = time.time_ns()
        route = getattr(scope.get("route"), "path", UNMATCHED)
        method = request_labels(scope["method"], status)[0]
        attributes: dict[str, Any] = {"http.request.method": method, "http.route": route,
                                      "http.response.status_code": status}
        if ruleset:
            attributes["covreq.ruleset"] = ruleset
        hook = SERVICES.get(scope.get("path_params", {}).get("service_id", "")) if route != UNMATCHED else None
        if hook:
            attributes["covreq.hook"] = hook
        answered = scope.get("state", {}).get(ANSWERS_KEY)
        if answered:
            api, counts = answered
            attributes["covreq.api"] = api
            attributes["covreq.decisions"] = sum(counts.values())
            for pa_needed, count in counts.items():
                attributes[f"covreq.decisions.{pa_needed.replace('-', '_')}"] = count
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", ())
                   if k in (b"traceparent", b"tracestate")}
        parent = self._propagator.extract(headers) if headers else None
        span = self._tracer.start_span(f"{method} {route}", context=parent, kind=self._server,
                                       attributes=attributes, start_time=end - int(seconds * 1e9))
        if status >= 500:
            span.set_status(self._error)
        span.end(end_time=end)


def tracing_from(configured: str | None, env: Mapping[str, str] | None = None) -> Tracing | None:
    """The tracing the settings and the environment ask for, None when off. Without covreq[otel]
    installed, ``COVREQ_OTLP_ENDPOINT`` stops the service at start (ValueError); the standard
    variables, which may be meant for other programs, only get a warning."""
    env = os.environ if env is None else env
    endpoint = traces_endpoint(configured, env)
    if endpoint is None:
        return None
    protocol = env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
    if protocol and protocol.strip() != "http/protobuf":
        log.warning("OTEL_EXPORTER_OTLP_PROTOCOL is %s, but covreq sends spans by OTLP/HTTP with protobuf only",
                    protocol, extra={"event": "tracing-protocol"})
    try:
        return Tracing(endpoint, env.get("OTEL_SERVICE_NAME") or "covreq")
    except ImportError:
        if configured:
            raise ValueError("COVREQ_OTLP_ENDPOINT is set but OpenTelemetry is not installed: "
                             "pip install 'covreq[otel]'") from None
        log.warning("OTEL_EXPORTER_OTLP_ENDPOINT is set but OpenTelemetry is not installed "
                    "(pip install 'covreq[otel]'): no spans are sent", extra={"event": "tracing-unavailable"})
        return None
