"""``POST /fhir/Claim/$submit`` and ``POST /fhir/Claim/$inquire`` (Da Vinci PAS), and the overdue query.

Both sit under ``/fhir`` with the DTR endpoints (SMART Backend Services when configured, errors as
OperationOutcome resources). A request is read, decided and stored off the event loop; a submission
already stored (same submitter transaction identifier and Claim identifiers) is answered with its
first response. Every decision is written to the audit trail, without PHI.
"""
from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from service.dtr.catalogue import PREFIX, forms_of
from service.dtr.limits import off_loop
from service.fhir.outcome import FhirError, operation_outcome
from service.metrics import answered
from service.pas import clock
from service.pas.decide import ItemDecision, decide_all
from service.pas.evidence import gather
from service.pas.request import read_request
from service.pas.response import as_inquiry, claim_response, inquiry_answer, response_bundle
from service.pas.store import PasStore, submission_key
from service.responses import UNAUDITED, json_response
from service.store.replay import StoreUnavailable
from service.v1 import parse_json

SUBMIT, INQUIRE = PREFIX + "/Claim/$submit", PREFIX + "/Claim/$inquire"
OVERDUE = "/v1/pa-requests/overdue"
OPERATIONS = {"submit": "http://hl7.org/fhir/us/davinci-pas/OperationDefinition/Claim-submit",
              "inquire": "http://hl7.org/fhir/us/davinci-pas/OperationDefinition/Claim-inquiry"}
FHIR_JSON = {"Content-Type": "application/fhir+json"}
router = APIRouter(tags=["FHIR: Da Vinci PAS"])


def store_of(request: Request) -> PasStore:
    """The PAS store of the app."""
    return request.app.state.pas_store  # type: ignore[no-any-return]


async def _body(request: Request) -> Any:
    try:
        return await off_loop(parse_json, await request.body())
    except ValueError as err:
        raise FhirError(400, f"malformed JSON: {err}") from err


def _submit(request: Request, body: Any, now: dt.datetime) -> tuple[dict[str, Any], str, list[ItemDecision], bool]:
    """Read, decide and store a submission: (response Bundle, request id, decisions, replayed)."""
    ruleset = request.app.state.holder.current
    pa = read_request(body, request.app.state.payers)
    store, key = store_of(request), submission_key(pa)
    stored = store.find(key)
    if stored is not None:
        return stored, str(stored["entry"][0]["resource"]["id"]), [], True
    evidence = gather(pa.index, pa.claim, forms_of(request), request.app.state.dtr_keys)
    decisions = decide_all(pa, evidence, ruleset, now.date(), [])
    request_id = str(uuid.uuid4())
    bundle = response_bundle(pa, claim_response(pa, decisions, request_id, now))
    given = store.save(request_id, key, pa, decisions, now, clock.due(now, pa.priority), ruleset.digest, bundle)
    replayed = given is not bundle
    return given, str(given["entry"][0]["resource"]["id"]), [] if replayed else decisions, replayed


@router.post(SUBMIT, summary="PAS: submit a prior-authorization request (a PAS request Bundle)")
async def submit(request: Request) -> Response:
    """A PAS request Bundle in; the PAS response Bundle (ClaimResponse first) out."""
    digest = request.app.state.holder.current.digest
    audit = request.app.state.audit
    try:
        body = await _body(request)
        bundle, request_id, decisions, replayed = await off_loop(
            _submit, request, body, dt.datetime.now(dt.timezone.utc))
    except FhirError as err:
        audit.pas(request, digest, err.status, "submit", expression=err.expression)
        return operation_outcome(err.status, err.message, digest, err.expression)
    except StoreUnavailable as err:
        audit.pas(request, digest, 503, "submit")
        return operation_outcome(503, str(err), digest)
    if audit.withheld(audit.pas(request, digest, 200, "submit", request_id, decisions, replayed)):
        return operation_outcome(503, UNAUDITED, digest)
    answered(request, "pas", (d.status for d in decisions))
    return json_response(bundle, digest, 200, headers=FHIR_JSON)


def _inquire(request: Request, body: Any) -> dict[str, Any]:
    pa = read_request(body, request.app.state.payers, inquiry=True)
    found = store_of(request).inquire(pa.payer.payer, pa.member, pa.claim_identifiers)
    if not found and not pa.version.inquire_parameters:
        raise FhirError(404, "no prior-authorization request of this member matches the inquiry's Claim identifiers",
                        "Bundle.entry[0].resource.identifier")
    return inquiry_answer(pa.version, [as_inquiry(b) for b in found])


@router.post(INQUIRE, summary="PAS: inquire about a prior-authorization request (a PAS inquiry Bundle)")
async def inquire(request: Request) -> Response:
    """A PAS inquiry request Bundle in; the inquiry response Bundle (Parameters of Bundles from 2.2) out."""
    digest = request.app.state.holder.current.digest
    audit = request.app.state.audit
    try:
        answer = await off_loop(_inquire, request, await _body(request))
    except FhirError as err:
        audit.pas(request, digest, err.status, "inquire", expression=err.expression)
        return operation_outcome(err.status, err.message, digest, err.expression)
    except StoreUnavailable as err:
        audit.pas(request, digest, 503, "inquire")
        return operation_outcome(503, str(err), digest)
    if audit.withheld(audit.pas(request, digest, 200, "inquire")):
        return operation_outcome(503, UNAUDITED, digest)
    return json_response(answer, digest, 200, headers=FHIR_JSON)


@router.get(OVERDUE, summary="PAS requests still pended past their due time (72 h expedited, 7 days standard)")
def overdue(request: Request, limit: int = 100) -> JSONResponse:
    """The overdue requests, most overdue first: ids, payer, priority, received and due times."""
    digest = request.app.state.holder.current.digest
    now = dt.datetime.now(dt.timezone.utc)
    try:
        found = store_of(request).overdue(now, max(1, min(limit, 1000)))
    except StoreUnavailable as err:
        return json_response({"error": str(err)}, digest, 503)
    return json_response({"now": now.isoformat(), "overdue": found}, digest, 200)
