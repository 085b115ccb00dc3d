"""The FastAPI application: v1 API, CDS Hooks / Da Vinci CRD endpoints and operations."""
from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import os
import signal
from contextlib import asynccontextmanager
from typing import AsyncIterator, Callable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from service import heap, logs, lookup, metrics, ops, palist, v1
from service.audit import AuditLog
from service.auth import Authenticate, Guard
from service.crd import routes as crd_routes
from service.decision_log import DecisionLog
from service.fhir import r4
from service.fhir.outcome import operation_outcome
from service.crd.envelope import Limits
from service.crd.discovery import served_version
from service.crd.gather import EhrPolicy
from service.crd.payers import PayerMap
from service.dtr import library_routes
from service.dtr import routes as dtr_routes
from service.dtr.signing import Keyring
from service.dtr.versions import version as dtr_version
from service.pas import routes as pas_routes
from service.pas.store import PasStore
from service.ehr_client import EhrLimits
from service.bundles import BundleSource
from service.holder import RuleSetHolder
from service.pas import review_routes, subscription_routes
from service.pas.reviewers import Reviewers
from service.pas.notifier import Notifier
from service.pas.subscription_store import SubscriptionStore
from service.metrics import Metrics, worker_exited
from service.middleware import AccessLog, BodyLimit, ConnectionCap, StartWatch
from service.ratelimit import RateLimit, limiter_from
from service.responses import RULESET_HEADER, v1_error
from service.settings import Settings
from service.smart import routes as smart_routes
from service.smart.authority import Authority
from service.smart.enforce import ScopeCheck
from service.tracing import tracing_from
from service.store.database import Database, OnDemand

log = logging.getLogger("covreq.service")
#: FastAPI's own OpenTelemetry instrumentation (FastAPI 0.16x), off: its spans and logs would carry
#: query strings and exception messages; covreq makes its own span per request (service/tracing.py).
_NATIVE_TELEMETRY_OFF = ({"telemetry": {"tracing": False, "metrics": False, "logs": False, "operation_spans": False}}
                         if "telemetry" in inspect.signature(FastAPI).parameters else {})


def _sighup_reload(app: FastAPI) -> bool:
    """Make SIGHUP run ``app.state.hup_hooks`` (quick ones, on the event loop: the TLS certificate)
    and reload the rules (off the event loop, as ``POST /admin/reload`` does); False where signals
    are unavailable."""
    loop = asyncio.get_running_loop()

    def on_hup() -> None:
        for hook in app.state.hup_hooks:
            hook()
        loop.run_in_executor(None, ops.reload_rules, app.state)

    try:
        loop.add_signal_handler(signal.SIGHUP, on_hup)
    except (ValueError, RuntimeError, NotImplementedError, AttributeError):
        return False
    return True


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    installed = _sighup_reload(app)
    bundles: BundleSource | None = app.state.bundles
    if bundles:
        bundles.start(app.state.holder)
    if app.state.audit.sink:
        app.state.audit.sink.start()
    r4.prepare()  # the FHIR models are imported now, not by the worker's first CRD call
    heap.settle()  # everything loaded so far lives as long as the worker
    app.state.metrics.start()
    if app.state.tracing:
        app.state.tracing.start()
    log.info("serving", extra={"event": "started", "ruleset": app.state.holder.current.digest,
                               "sighup_reload": installed, "bundle": bundles.public_url if bundles else None})
    if app.state.payers.match_by_name:
        log.warning("the payer mapping matches payers by name too (match_by_name: true): a Coverage that "
                    "names a payer without its identifier is answered",
                    extra={"event": "payers-by-name", "file": str(app.state.settings.payers)})
    heartbeats_stop = asyncio.Event()
    heartbeats = asyncio.create_task(app.state.pas_notifier.run_heartbeats(heartbeats_stop))
    try:
        yield
    finally:
        heartbeats_stop.set()
        await heartbeats
        if bundles:
            bundles.stop()
        if installed:
            asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
        app.state.metrics.stop()
        if app.state.tracing:
            app.state.tracing.stop()
        if app.state.database:
            app.state.database.close()
        app.state.pas_tables.close()
        if app.state.audit.sink:
            app.state.audit.sink.close()  # delivers what is left, within COVREQ_DECISION_LOG_SHUTDOWN_SECONDS
        worker_exited()
        # uvicorn shuts the lifespan down once the requests under way have finished, or were cut
        # after COVREQ_SHUTDOWN_SECONDS (its "Cancel N running task(s)" error line says so)
        log.info("stopped", extra={"event": "stopped", "ruleset": app.state.holder.current.digest,
                                   "pid": os.getpid(), "drain_seconds": app.state.settings.shutdown_seconds})


class CutAtShutdown:
    """A request still under way when SIGTERM's time limit (``COVREQ_SHUTDOWN_SECONDS``) is over is
    cancelled by uvicorn, which would answer it 500: it is answered ``refuse(path)`` (a 503) with
    ``Retry-After`` and ``Connection: close`` instead, so the caller retries on another replica.
    (Only uvicorn's shutdown cancels a request's task; the cancellation ends here, with the answer.)"""

    def __init__(self, app: ASGIApp, refuse: Callable[[str], Response]) -> None:
        self.app, self.refuse = app, refuse

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        watch = StartWatch(send)
        try:
            await self.app(scope, receive, watch)
        except asyncio.CancelledError:
            if watch.started:
                raise
            log.warning("request cut: the service stopped before it was answered (COVREQ_SHUTDOWN_SECONDS)",
                        extra={"event": "request-cut", "path": logs.caller_text(scope["path"])})
            response = self.refuse(scope["path"])
            response.headers.update({"Retry-After": "1", "Connection": "close"})
            await response(scope, receive, send)


def _error_response(app: FastAPI, path: str, status: int, message: str) -> Response:
    """An error in the shape of the API family the path belongs to."""
    digest = app.state.holder.current.digest
    if crd_routes.owns(path) or dtr_routes.owns(path):
        return operation_outcome(status, message, digest)
    return v1_error(status, message, digest)


def _observer(app: FastAPI) -> Callable[[Scope, int, float, str], None]:
    """What the access log does with each finished request: count it, and trace it when on."""
    metrics, holder, tracing = app.state.metrics, app.state.holder, app.state.tracing

    def observe(scope: Scope, status: int, seconds: float, ruleset: str) -> None:
        metrics.observe_request(scope, status, seconds, holder.current)
        if tracing is not None:
            tracing.record(scope, status, seconds, ruleset)
    return observe


def create_app(rules_path: str | None, settings: Settings | None = None) -> FastAPI:
    """The service for the rule tree at ``rules_path``, or for the bundle at ``settings.bundle_url``;
    raises ``engine.LoadError`` if the rules are broken, ``BundleError`` if the bundle is refused."""
    settings = settings or Settings()
    bundles = BundleSource.from_settings(settings) if settings.bundle_url else None
    rules_path = bundles.first() if bundles else rules_path
    if rules_path is None:
        raise ValueError("create_app needs a rule tree or settings.bundle_url")
    app = FastAPI(title="covreq", version="1", lifespan=_lifespan,
                  description="Does this CPT/HCPCS code need prior authorization for this payer and "
                              "plan, and what documentation? Every response names the rule set "
                              f"that produced it (body and `{RULESET_HEADER}` header).",
                  **_NATIVE_TELEMETRY_OFF)
    app.state.settings = settings
    app.state.metrics = Metrics()
    app.state.tracing = tracing_from(settings.otlp_endpoint)
    app.state.holder = RuleSetHolder(str(rules_path), metrics=app.state.metrics)
    app.state.bundles = bundles
    app.state.hup_hooks = []  # run first on SIGHUP, on the event loop (service/server.py: TLS certificates)
    app.state.payers = PayerMap.load(settings.payers)
    app.state.crd_limits = Limits(settings.crd_max_orders, settings.crd_max_coverages,
                                  settings.crd_max_billing_codes, settings.crd_max_lines)
    app.state.crd_version = served_version(settings.crd_version)
    app.state.ehr_policy = EhrPolicy(
        settings.fhir_servers,
        EhrLimits(settings.ehr_timeout_seconds, settings.ehr_max_bytes, call_bytes=settings.ehr_call_max_bytes),
        deadline=settings.ehr_call_seconds)
    app.state.audit = AuditLog(settings.audit_path, settings.strict_audit,
                               DecisionLog.from_settings(settings, app.state.metrics.registry))  # issue 26 item 8
    app.state.audit.check()
    app.state.smart = Authority.from_settings(settings)  # SMART Backend Services on /fhir, when configured
    app.state.database = Database.from_settings(settings)  # issue 26 item 6: the replay store workers share
    app.state.pas_tables = OnDemand(settings, app.state.database)  # PAS and its subscriptions: opened on first use
    app.state.pas_store = PasStore(app.state.pas_tables)
    guard = Guard.from_settings(settings, app.state.smart.tokens if app.state.smart else None,
                                app.state.database.replay if app.state.database else None)
    app.state.pas_subscriptions = SubscriptionStore(app.state.pas_tables)
    app.state.pas_notifier = Notifier(app.state.pas_subscriptions, settings)
    app.state.reviewers = Reviewers.from_settings(settings)  # PAS reviewers' keys (off unless COVREQ_REVIEWER_KEYS)
    app.state.dtr_version = dtr_version(settings.dtr_version)  # a version not served stops the start
    app.state.dtr_keys = Keyring.from_settings(settings)  # last: its warning only once the rest is usable
    limiter = limiter_from(settings.rate_limit, settings.rate_limit_burst)
    app.include_router(v1.router)
    app.include_router(crd_routes.router)
    app.include_router(dtr_routes.router)
    app.include_router(library_routes.router)
    app.include_router(pas_routes.router)
    app.include_router(smart_routes.router)
    app.include_router(ops.router)
    app.include_router(lookup.router)
    app.include_router(palist.router)
    app.include_router(subscription_routes.router)
    app.include_router(review_routes.router)
    app.include_router(metrics.router)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        return _error_response(app, request.url.path, exc.status_code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {"msg": "invalid request"}
        return _error_response(app, request.url.path, 422, str(first.get("msg")))

    app.add_middleware(ScopeCheck, refuse=functools.partial(_error_response, app))  # inside Authenticate
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes, refuse=lambda path: _error_response(
        app, path, 413, f"request body larger than {settings.max_body_bytes} bytes"))
    if limiter is not None:  # inside Authenticate: the client is named by its credentials where it has any
        app.add_middleware(RateLimit, limiter=limiter, refuse=functools.partial(_error_response, app),
                           counted=app.state.metrics.limited)
    app.add_middleware(Authenticate, guard=guard, refuse=functools.partial(_error_response, app))
    app.add_middleware(ConnectionCap, exempt=frozenset({ops.LIVENESS}), refuse=lambda path: _error_response(
        app, path, 503, f"this process holds its {settings.max_connections} connections (COVREQ_MAX_CONNECTIONS), "
                        "each with a request under way: retry after a moment"))
    app.add_middleware(CutAtShutdown, refuse=lambda path: _error_response(
        app, path, 503, "the service stopped before this request was answered: retry"))
    app.add_middleware(AccessLog, header=RULESET_HEADER, observe=_observer(app))
    return app
