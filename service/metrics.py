"""Prometheus metrics of a running service, served at ``/metrics`` (prometheus-client).

With ``covreq serve --workers N`` each worker writes its values to files in
``PROMETHEUS_MULTIPROC_DIR`` (prometheus-client's multiprocess mode, set up by ``service/server.py``)
and a scrape of any worker reads them all: counters and histograms are summed over the workers, and
the per-worker gauges carry a ``pid`` label, so a rollout can see every worker's rule set. The
``process_*`` and ``python_*`` series come from service/process_metrics.py, for every worker.
"""
from __future__ import annotations

import os
from collections import Counter as Tally
from http import HTTPStatus
from typing import Any, Iterable, Mapping

from fastapi import APIRouter, Request
from prometheus_client import (CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram,
                               generate_latest, multiprocess)
from starlette.responses import Response
from starlette.types import Scope

import engine
from service.bearer import token_refusal
from service.process_metrics import WorkerSampler, forget_dead_workers, standard_collectors

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
#: Routes whose requests are decisions: their latency goes into the decision histogram.
DECISION_ROUTES = frozenset({"/v1/requirements", "/cds-services/{service_id}",
                             "/fhir/Questionnaire/$questionnaire-package", "/fhir/Questionnaire/$next-question"})
#: Decision latency buckets, seconds: a cached answer takes tens of microseconds, a CRD call milliseconds.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
#: The route label of requests that matched no route (kept apart so unknown paths cannot add series).
UNMATCHED = "unmatched"
#: The ``method`` label's values: HTTP's own methods; any other a caller invents is counted as ``other``.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE", "CONNECT"})
OTHER = "other"
#: The ``status`` label's values: the registered HTTP status codes; any other is its class (``5xx``).
STATUSES = frozenset(int(s) for s in HTTPStatus)
#: Why a bundle poll failed (the ``reason`` label): the URL gave no bundle, the bundle was refused,
#: it could not be written, its rules did not load, a bug.
BUNDLE_POLL_FAILURES = ("download", "refused", "unpack", "rules", "internal")
#: The ``client`` label of ``covreq_rate_limited_total``: how the refused client was named.
RATE_LIMITED_CLIENTS = ("api-key", "jwt", "smart", "address")
#: Where :func:`answered` notes a request's answers in ``scope["state"]`` (its span reads them).
ANSWERS_KEY = "covreq.answers"

router = APIRouter(tags=["operations"])


class Metrics:
    """The service's metrics, registered in their own registry (one per application).

    ``observe_request`` is called by the access log for every request, ``answered`` by the decision
    endpoints, ``loaded`` and ``refused`` by the rule-set holder.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("covreq_http_requests", "HTTP requests by route template, method and status",
                                ("route", "method", "status"), registry=r)
        self.decision_seconds = Histogram("covreq_decision_duration_seconds",
                                          "Time to answer a decision request (v1 or CDS Hooks), seconds",
                                          ("route",), buckets=LATENCY_BUCKETS, registry=r)
        self.answers = Counter("covreq_answers", "Service lines answered, by API and pa_needed",
                               ("api", "pa_needed"), registry=r)
        self.ruleset = Gauge("covreq_ruleset_info", "1 for the digest of the rule set in service, 0 for earlier ones",
                             ("digest",), registry=r, multiprocess_mode="liveall")
        self.loaded_at = Gauge("covreq_ruleset_loaded_timestamp_seconds",
                               "When the rule set in service was loaded (Unix time)", registry=r,
                               multiprocess_mode="liveall")
        self.load_seconds = Gauge("covreq_ruleset_load_duration_seconds",
                                  "How long loading the rule set in service took, seconds", registry=r,
                                  multiprocess_mode="liveall")
        self.policies = Gauge("covreq_ruleset_policies", "Policies in the rule set in service", registry=r,
                              multiprocess_mode="liveall")
        self.reload_failures = Counter("covreq_reload_failures", "Reloads refused (the last good rule set stayed)",
                                       ("source",), registry=r)
        for source in ("tree", "bundle"):  # shown at 0 from the start, so an alert rule finds the series
            self.reload_failures.labels(source)
        self.bundle_poll_failures = Counter("covreq_bundle_poll_failures",
                                            "Bundle polls and reloads that failed, by reason", ("reason",), registry=r)
        for reason in BUNDLE_POLL_FAILURES:
            self.bundle_poll_failures.labels(reason)
        self.rate_limited = Counter("covreq_rate_limited", "Requests refused (429) by the rate limit, by kind of client",
                                    ("client",), registry=r)
        for kind in RATE_LIMITED_CLIENTS:  # shown at 0 from the start, so an alert rule finds the series
            self.rate_limited.labels(kind)
        self.pas_overdue = Gauge("covreq_pa_requests_overdue", "PAS requests still pended past their due time "
                                 "(72 h expedited, 7 days standard), as the database held them at the last scrape",
                                 registry=r, multiprocess_mode="livemostrecent")
        self.cache_lookups = Counter("covreq_cache_lookups", "Cache lookups by cache and result (hit or miss)",
                                     ("cache", "result"), registry=r)
        #: Labelled children already made: prometheus-client checks the values and takes a lock on every
        #: ``labels`` call, several times per request. As many as prometheus-client keeps itself.
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        self._digest: str | None = None
        self._cache_seen: tuple[int, dict[tuple[str, str], int]] = (0, {})
        self._sampler: WorkerSampler | None = None
        if os.environ.get(MULTIPROCESS_ENV):
            self._sampler = WorkerSampler(r)
        else:
            standard_collectors(r)

    def start(self) -> None:
        """Begin copying this worker's process values (multiprocess mode; nothing to do otherwise)."""
        if self._sampler:
            self._sampler.start()

    def stop(self) -> None:
        """Stop copying them."""
        if self._sampler:
            self._sampler.stop()

    def _labels(self, metric: Any, *values: str) -> Any:
        """``metric.labels(*values)``, made once."""
        key = (id(metric), values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*values)
        return child

    def loaded(self, ruleset: engine.RuleSet, seconds: float) -> None:
        """A rule set went into service after ``seconds`` of loading."""
        if self._digest is not None and self._digest != ruleset.digest:
            self.ruleset.labels(self._digest).set(0)
        self._digest = ruleset.digest
        self.ruleset.labels(ruleset.digest).set(1)
        self.loaded_at.set(ruleset.loaded_at.timestamp())
        self.load_seconds.set(seconds)
        self.policies.set(ruleset.policy_count())

    def refused(self, source: str) -> None:
        """A reload from ``source`` (``tree`` or ``bundle``) was refused."""
        self.reload_failures.labels(source).inc()

    def bundle_poll_failed(self, reason: str) -> None:
        """A bundle poll failed for ``reason`` (one of :data:`BUNDLE_POLL_FAILURES`; else ``internal``)."""
        self.bundle_poll_failures.labels(reason if reason in BUNDLE_POLL_FAILURES else "internal").inc()
    def limited(self, client: str) -> None:
        """A request of a ``client`` kind (one of :data:`RATE_LIMITED_CLIENTS`, else ``other``) was
        refused by the rate limit."""
        self._labels(self.rate_limited, client if client in RATE_LIMITED_CLIENTS else OTHER).inc()

    def answered(self, api: str, counts: Mapping[str, int]) -> None:
        """Count the answers of one decision request, by ``pa_needed``."""
        for value, count in counts.items():
            self._labels(self.answers, api, value).inc(count)

    def observe_request(self, scope: Scope, status: int, seconds: float, ruleset: engine.RuleSet) -> None:
        """Count one finished request; for decisions, time it and bring the cache counts up to date."""
        route = getattr(scope.get("route"), "path", UNMATCHED)
        self._labels(self.requests, route, *request_labels(scope["method"], status)).inc()
        if route in DECISION_ROUTES:
            self._labels(self.decision_seconds, route).observe(seconds)
            self._count_cache_lookups(ruleset)

    def _count_cache_lookups(self, ruleset: engine.RuleSet) -> None:
        """Add the lookups the rule set's caches made since the last call (a new rule set starts at 0)."""
        answers, selections = ruleset.answer_cache_info(), ruleset.select_cache_info()
        now = {("answers", "hit"): answers["hits"], ("answers", "miss"): answers["misses"],
               ("selections", "hit"): selections["hits"], ("selections", "miss"): selections["misses"]}
        owner, before = self._cache_seen
        if owner != id(ruleset):
            before = {}
        for key, count in now.items():
            if count > before.get(key, 0):
                self._labels(self.cache_lookups, *key).inc(count - before.get(key, 0))
        self._cache_seen = (id(ruleset), now)

    def exposition(self) -> bytes:
        """The text exposition of every metric: of all workers in multiprocess mode, else of this one."""
        folder = os.environ.get(MULTIPROCESS_ENV)
        if folder:
            if self._sampler:
                self._sampler.sample()
            forget_dead_workers(folder)
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry)
        return generate_latest(self.registry)


def request_labels(method: str, status: int) -> tuple[str, str]:
    """The ``method`` and ``status`` labels of a request, each from a closed set of values, so that
    no caller (authenticated or not) can add series by inventing methods or statuses."""
    return (method if method in METHODS else OTHER,
            str(status) if status in STATUSES else f"{status // 100}xx")


def answered(request: Request, api: str, pa_needed: Iterable[str | None]) -> None:
    """Count the service lines a decision request answered (``none`` where CRD gives no
    pa-needed), and note the counts on the request for its span (service/tracing.py)."""
    counts = Tally(value or "none" for value in pa_needed)
    request.scope.setdefault("state", {})[ANSWERS_KEY] = (api, counts)
    request.app.state.metrics.answered(api, counts)


def worker_exited(pid: int | None = None) -> None:
    """Drop a finished worker's live gauges (multiprocess mode only)."""
    if os.environ.get(MULTIPROCESS_ENV):
        multiprocess.mark_process_dead(pid or os.getpid())


@router.get("/metrics", summary="Prometheus metrics (text exposition format)", include_in_schema=True)
def metrics(request: Request) -> Response:
    """Requests by route and status, decision latency, answers by pa_needed, the rule set in service,
    reload failures, cache lookups and overdue PAS requests; see docs/operations.md. With ``COVREQ_METRICS_TOKEN`` set, only
    for ``Authorization: Bearer <token>`` (401 otherwise)."""
    token = request.app.state.settings.metrics_token
    refused = token_refusal(request, token, "COVREQ_METRICS_TOKEN") if token else None
    if refused:
        return refused
    overdue = request.app.state.pas_store.overdue_count()
    if overdue is not None:
        request.app.state.metrics.pas_overdue.set(overdue)
    exposition: Any = request.app.state.metrics.exposition()
    return Response(exposition, media_type=CONTENT_TYPE_LATEST)
