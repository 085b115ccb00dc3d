"""``/fhir/Subscription``: PAS subscriptions (R4 Subscriptions Backport) created, updated, read,
searched, deleted, and their ``$status``.

A create is checked against the PAS profile and topic (400 OperationOutcome naming the element
otherwise) and against the endpoints covreq may notify; it is stored ``requested`` and answered
201, then the handshake is sent and the subscription becomes ``active`` (or ``error``). Each
subscription belongs to the caller that made it (its credentials): another caller neither sees nor
changes it. Reads never return the channel's headers, which may hold the subscriber's credentials.
"""
from __future__ import annotations

import datetime as dt
import re
import uuid
from typing import Any

import anyio.to_thread
from fastapi import APIRouter, BackgroundTasks, Request
from fastapi.responses import JSONResponse, Response

from service.audit import caller_of
from service.dtr.catalogue import PREFIX, fhir_base
from service.fhir.outcome import FhirError, operation_outcome
from service.pas.notifier import Notifier
from service.pas.subscription_store import ACTIVE, ERROR, OFF, REQUESTED, Subscription, SubscriptionStore
from service.pas.subscriptions import SubscriptionRequest, read_subscription, status_parameters
from service.responses import json_response
from service.v1 import parse_json

SUBSCRIPTIONS = PREFIX + "/Subscription"
FHIR_JSON = {"Content-Type": "application/fhir+json"}
_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_STATUSES = (REQUESTED, ACTIVE, ERROR, OFF)
router = APIRouter(tags=["FHIR: Da Vinci PAS subscriptions"])


def _store(request: Request) -> SubscriptionStore:
    return request.app.state.pas_subscriptions  # type: ignore[no-any-return]


def _notifier(request: Request) -> Notifier:
    return request.app.state.pas_notifier  # type: ignore[no-any-return]


def _fhir(request: Request, body: Any, status: int = 200, headers: dict[str, str] | None = None) -> JSONResponse:
    return json_response(body, request.app.state.holder.current.digest, status, {**FHIR_JSON, **(headers or {})})


def _refused(request: Request, err: FhirError) -> JSONResponse:
    return operation_outcome(err.status, err.message, request.app.state.holder.current.digest, err.expression)


def owner_of(request: Request) -> str:
    """Who a subscription belongs to: the authenticated caller (every caller alike when authentication is off)."""
    caller = caller_of(request)
    return f"{caller.kind}:{caller.name}:{caller.subject or ''}"[:512]


async def _found(request: Request, subscription_id: str) -> Subscription:
    """The caller's subscription with that id; a 404 (another caller's is not even said to exist)."""
    found = (await _in_thread(_store(request).get, subscription_id, owner_of(request))
             if _ID.fullmatch(subscription_id) else None)
    if found is None:
        raise FhirError(404, f"no Subscription with id {subscription_id[:64]!r}", "Subscription.id")
    return found


async def _in_thread(work: Any, *args: Any) -> Any:
    """``work(*args)`` in a worker thread: the database is never used on the event loop."""
    return await anyio.to_thread.run_sync(work, *args)


async def _wanted(request: Request) -> SubscriptionRequest:
    """The Subscription of the request's body, checked, its endpoint one covreq may notify."""
    try:
        body = parse_json(await request.body())
    except ValueError as err:
        raise FhirError(400, f"malformed JSON: {err}") from err
    wanted = read_subscription(body, dt.datetime.now(dt.timezone.utc))
    refused = await _notifier(request).reachable(wanted.channel.endpoint)
    if refused is not None:
        raise FhirError(400, refused, "Subscription.channel.endpoint")
    return wanted


@router.post(SUBSCRIPTIONS, summary="PAS: subscribe to the decisions of an organization's pended requests", status_code=201)
async def create(request: Request, tasks: BackgroundTasks) -> Response:
    """A PAS Subscription in; 201 with the stored Subscription (status requested) and its Location,
    the handshake sent after the answer."""
    try:
        wanted = await _wanted(request)
    except FhirError as err:
        return _refused(request, err)
    base = fhir_base(request)
    subscription = await _in_thread(_store(request).create, wanted, str(uuid.uuid4()), base,
                                    dt.datetime.now(dt.timezone.utc), owner_of(request))
    tasks.add_task(_notifier(request).handshake, subscription)
    return _fhir(request, subscription.as_resource(), 201, {"Location": f"{base}/Subscription/{subscription.id}"})


@router.put(SUBSCRIPTIONS + "/{subscription_id}", summary="PAS: update a Subscription")
async def replace(request: Request, subscription_id: str, tasks: BackgroundTasks) -> Response:
    """A PAS Subscription in (its ``id``, when given, the one in the URL); 200 with it stored,
    status requested again, and a new handshake sent after the answer; 404 when there is none."""
    try:
        wanted = await _wanted(request)
        if wanted.resource.get("id", subscription_id) != subscription_id:
            raise FhirError(400, "the Subscription's id is not the one in the URL", "Subscription.id")
        await _found(request, subscription_id)
    except FhirError as err:
        return _refused(request, err)
    subscription = await _in_thread(_store(request).replace, wanted, subscription_id, fhir_base(request),
                                    owner_of(request))
    if subscription is None:
        return _refused(request, FhirError(404, f"no Subscription with id {subscription_id[:64]!r}", "Subscription.id"))
    tasks.add_task(_notifier(request).handshake, subscription)
    return _fhir(request, subscription.as_resource())


@router.get(SUBSCRIPTIONS + "/{subscription_id}", summary="PAS: read a Subscription")
async def read(request: Request, subscription_id: str) -> Response:
    """The Subscription with its current status."""
    try:
        return _fhir(request, (await _found(request, subscription_id)).as_resource())
    except FhirError as err:
        return _refused(request, err)


@router.get(SUBSCRIPTIONS, summary="PAS: search Subscriptions by status")
async def search(request: Request, status: str | None = None) -> Response:
    """A searchset Bundle of the Subscriptions (of one status), oldest first, at most 100."""
    if status is not None and status not in _STATUSES:
        return _refused(request, FhirError(400, f"status is one of {', '.join(_STATUSES)}", "status"))
    found = await _in_thread(_store(request).search, owner_of(request), status)
    base = fhir_base(request)
    return _fhir(request, {"resourceType": "Bundle", "type": "searchset", "total": len(found),
                           "entry": [{"fullUrl": f"{base}/Subscription/{s.id}", "resource": s.as_resource(),
                                      "search": {"mode": "match"}} for s in found]})


@router.get(SUBSCRIPTIONS + "/{subscription_id}/$status", summary="PAS: a Subscription's status (backport $status)")
@router.post(SUBSCRIPTIONS + "/{subscription_id}/$status", summary="PAS: a Subscription's status (backport $status)",
             operation_id="status_of_subscription_post")
async def status_of(request: Request, subscription_id: str) -> Response:
    """A searchset Bundle with the subscription's SubscriptionStatus (type query-status)."""
    try:
        found = await _found(request, subscription_id)
    except FhirError as err:
        return _refused(request, err)
    parameters = status_parameters(found.base, found.id, found.status, "query-status", found.events)
    return _fhir(request, {"resourceType": "Bundle", "type": "searchset", "total": 1,
                           "entry": [{"fullUrl": f"urn:uuid:{parameters['id']}", "resource": parameters,
                                      "search": {"mode": "match"}}]})


@router.delete(SUBSCRIPTIONS + "/{subscription_id}", summary="PAS: end a Subscription")
async def remove(request: Request, subscription_id: str) -> Response:
    """204 once the subscription is gone; 404 when there is none."""
    if not _ID.fullmatch(subscription_id) or not await _in_thread(_store(request).delete, subscription_id,
                                                                  owner_of(request)):
        return _refused(request, FhirError(404, f"no Subscription with id {subscription_id[:64]!r}", "Subscription.id"))
    return Response(status_code=204)
