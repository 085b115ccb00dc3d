"""The CDS Hooks endpoints: discovery and one service per CRD hook."""
from __future__ import annotations

import functools
import logging
from datetime import date
from typing import Any, Callable, TypeVar

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from service.crd.assess import assess
from service.pas.onfile import with_on_file
from service.crd.discovery import SERVICES, discovery
from service.crd.envelope import read_envelope
from service.crd.gather import complete
from service.fhir.outcome import FhirError, operation_outcome
from service.crd.requests import read_call
from service.crd.responses import cards, system_actions
from service.dtr.catalogue import forms_of
from service.fhir.index import ResourceIndex
from service.logs import caller_text
from service.metrics import answered
from service.responses import UNAUDITED, json_response, render_json, rendered_response, too_large
from service.v1 import BodyError, parse_json

PREFIX = "/cds-services"
RULESET_EXTENSION = "covreq.ruleset"
#: Calls of at most this many bytes are read and answered on the event loop: handing one to a
#: thread and back costs more than it spares (the IG's order-sign example, 23 KB, takes ~3 ms).
#: Larger calls run in the threadpool, so that one of them never holds up the others for long.
INLINE_BYTES = 32 * 1024
_T = TypeVar("_T")
router = APIRouter(tags=["CDS Hooks / Da Vinci CRD"])
log = logging.getLogger("covreq.crd")


def owns(path: str) -> bool:
    """Whether a path belongs to the CDS Hooks endpoints (errors there are OperationOutcomes)."""
    return path == PREFIX or path.startswith(PREFIX + "/")


@router.get(PREFIX, summary="CDS Hooks discovery: the CRD services, prefetch and options")
def discover(request: Request) -> JSONResponse:
    """The discovery document, with the rule set's digest in ``extension``."""
    digest = request.app.state.holder.current.digest
    return json_response({**discovery(), "extension": {RULESET_EXTENSION: digest}}, digest)


@router.post(PREFIX + "/{service_id}", summary="Call a CRD service (order-select, order-sign, "
                                               "order-dispatch, appointment-book)")
async def call_service(service_id: str, request: Request) -> Response:
    """Coverage information for each order as systemActions, plus cards; errors as OperationOutcome."""
    ruleset, audit = request.app.state.holder.current, request.app.state.audit
    hook = SERVICES.get(service_id)
    if hook is None:
        return operation_outcome(404, f"no CDS service {service_id!r}; see GET {PREFIX}",
                                 ruleset.digest)
    raw = await request.body()
    try:
        body = parse_json(raw)
    except BodyError as err:
        audit.cds(request, ruleset.digest, 400, hook, expression=err.location)
        return operation_outcome(400, f"malformed JSON: {err}", ruleset.digest, err.location)
    today = date.today()
    state = request.app.state
    run = functools.partial(_run, len(raw) <= INLINE_BYTES)
    try:
        envelope = await run(read_envelope, body, hook, state.crd_limits, state.crd_version)
        if not envelope.configuration.coverage_info:  # nothing to answer, so nothing more to read
            if audit.withheld(audit.cds(request, ruleset.digest, 200, hook, envelope.hook_instance)):
                return operation_outcome(503, UNAUDITED, ruleset.digest)
            return json_response({"cards": [], "systemActions": [],
                                  "extension": {RULESET_EXTENSION: ruleset.digest}}, ruleset.digest)
        index = ResourceIndex(envelope.prefetch.values())
        read = functools.partial(read_call, envelope, index, state.payers, set(ruleset.payers()), today)
        hook_call = await complete(envelope, index, read, state.ehr_policy)
        answers = await run(assess, hook_call, ruleset, forms_of(request),
                            functools.partial(with_on_file, state.pas_store))
    except FhirError as err:
        instance = body.get("hookInstance") if isinstance(body, dict) else None
        audit.cds(request, ruleset.digest, err.status, hook, instance if isinstance(instance, str) else None,
                  expression=err.expression)
        return operation_outcome(err.status, err.message, ruleset.digest, err.expression)
    response: dict[str, object] = {  # systemActions always, empty when nothing is new (the Inferno CRD kit)
        "cards": cards(answers, hook_call.configuration.max_cards, today),
        "systemActions": system_actions(answers, today, hook_call.configuration.version),
        "extension": {RULESET_EXTENSION: ruleset.digest}}
    rendered = render_json(response)
    refusal = too_large(rendered, state.settings.max_response_bytes)
    if refusal:
        audit.cds(request, ruleset.digest, 413, hook, hook_call.hook_instance)
        return operation_outcome(413, refusal, ruleset.digest)
    if audit.withheld(audit.cds(request, ruleset.digest, 200, hook, hook_call.hook_instance, answers)):
        return operation_outcome(503, UNAUDITED, ruleset.digest)
    answered(request, "cds-hooks", (a.assertion.pa_needed for a in answers))
    log.info("crd answer", extra={
        "event": "crd", "hook": hook, "hookInstance": caller_text(hook_call.hook_instance),
        "ruleset": ruleset.digest,
        "coverage_assertion_ids": list(dict.fromkeys(a.assertion_id for a in answers))})
    return rendered_response(rendered, ruleset.digest)


async def _run(inline: bool, work: Callable[..., _T], *args: Any) -> _T:
    """``work(*args)`` on the event loop when ``inline``, else in the threadpool (see INLINE_BYTES)."""
    return work(*args) if inline else await run_in_threadpool(work, *args)
