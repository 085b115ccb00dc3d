"""The FastAPI application: v1 API, CDS Hooks / Da Vinci CRD endpoints and operations."""
from __future__ import annotations

import asyncio
import functools
import logging
import signal
from contextlib import asynccontextmanager
from typing import AsyncIterator

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response

from service import heap, lookup, metrics, ops, v1
from service.audit import AuditLog
from service.auth import Authenticate, Guard
from service.crd import routes as crd_routes
from service.decision_log import DecisionLog
from service.fhir import r4
from service.fhir.outcome import operation_outcome
from service.crd.envelope import Limits
from service.crd.gather import EhrPolicy
from service.crd.payers import PayerMap
from service.dtr import routes as dtr_routes
from service.dtr.signing import Keyring
from service.ehr_client import EhrLimits
from service.bundles import BundleSource
from service.holder import RuleSetHolder
from service.metrics import Metrics, worker_exited
from service.middleware import AccessLog, BodyLimit, ConnectionCap
from service.responses import RULESET_HEADER, v1_error
from service.settings import Settings
from service.store.database import Database

log = logging.getLogger("covreq.service")


def _sighup_reload(app: FastAPI) -> bool:
    """Make SIGHUP reload the rules (off the event loop, as ``POST /admin/reload`` does); False where
    signals are unavailable."""
    loop = asyncio.get_running_loop()
    try:
        loop.add_signal_handler(signal.SIGHUP, lambda: loop.run_in_executor(None, ops.reload_rules, app.state))
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
    log.info("serving", extra={"event": "started", "ruleset": app.state.holder.current.digest,
                               "sighup_reload": installed, "bundle": bundles.public_url if bundles else None})
    if app.state.payers.match_by_name:
        log.warning("the payer mapping matches payers by name too (match_by_name: true): a Coverage that "
                    "names a payer without its identifier is answered",
                    extra={"event": "payers-by-name", "file": str(app.state.settings.payers)})
    try:
        yield
    finally:
        if bundles:
            bundles.stop()
        if installed:
            asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
        if app.state.database:
            app.state.database.close()
        if app.state.audit.sink:
            app.state.audit.sink.close()  # delivers what is left, within COVREQ_DECISION_LOG_SHUTDOWN_SECONDS
        worker_exited()


def _error_response(app: FastAPI, path: str, status: int, message: str) -> Response:
    """An error in the shape of the API family the path belongs to."""
    digest = app.state.holder.current.digest
    if crd_routes.owns(path) or dtr_routes.owns(path):
        return operation_outcome(status, message, digest)
    return v1_error(status, message, digest)


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
                              f"that produced it (body and `{RULESET_HEADER}` header).")
    app.state.settings = settings
    app.state.metrics = Metrics()
    app.state.holder = RuleSetHolder(str(rules_path), metrics=app.state.metrics)
    app.state.bundles = bundles
    app.state.payers = PayerMap.load(settings.payers)
    app.state.crd_limits = Limits(settings.crd_max_orders, settings.crd_max_coverages,
                                  settings.crd_max_billing_codes, settings.crd_max_lines)
    app.state.ehr_policy = EhrPolicy(
        settings.fhir_servers,
        EhrLimits(settings.ehr_timeout_seconds, settings.ehr_max_bytes, call_bytes=settings.ehr_call_max_bytes),
        deadline=settings.ehr_call_seconds)
    app.state.audit = AuditLog(settings.audit_path, settings.strict_audit,
                               DecisionLog.from_settings(settings, app.state.metrics.registry))  # issue 26 item 8
    app.state.audit.check()
    app.state.database = Database.from_settings(settings)  # issue 26 item 6: the replay store workers share
    guard = Guard.from_settings(settings, app.state.database.replay if app.state.database else None)
    app.state.dtr_keys = Keyring.from_settings(settings)  # last: its warning only once the rest is usable
    app.include_router(v1.router)
    app.include_router(crd_routes.router)
    app.include_router(dtr_routes.router)
    app.include_router(ops.router)
    app.include_router(lookup.router)
    app.include_router(metrics.router)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        return _error_response(app, request.url.path, exc.status_code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {"msg": "invalid request"}
        return _error_response(app, request.url.path, 422, str(first.get("msg")))

    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes, refuse=lambda path: _error_response(
        app, path, 413, f"request body larger than {settings.max_body_bytes} bytes"))
    app.add_middleware(Authenticate, guard=guard, refuse=functools.partial(_error_response, app))
    app.add_middleware(ConnectionCap, exempt=frozenset({ops.LIVENESS}), refuse=lambda path: _error_response(
        app, path, 503, f"this process holds its {settings.max_connections} connections (COVREQ_MAX_CONNECTIONS), "
                        "each with a request under way: retry after a moment"))
    app.add_middleware(AccessLog, header=RULESET_HEADER, observe=lambda scope, status, seconds: (
        app.state.metrics.observe_request(scope, status, seconds, app.state.holder.current)))
    return app
