"""The reviewers' reads and writes of the PAS tables: the queue, one request, and a decision.

A decision is one transaction. It first updates the request's row (a row lock in PostgreSQL,
the write lock in SQLite), so decisions on one request run one after the other; the item's
``revision`` must still be the one the reviewer decided on, else :class:`Conflict` (409: another
reviewer decided first). The item's row, the authorization on file for a certified one, the
request's status and the response Bundle ``$inquire`` answers all change together.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from sqlalchemy import func, insert, select, update

from service.pas.decide import PENDED
from service.pas.store import PasStore, _utc
from service.store.models import pa_authorization, pa_item, pa_request

#: Rebuilds the response Bundle from the request row, its item rows and the sequences just decided.
Rebuild = Callable[[Mapping[str, Any], list[dict[str, Any]], set[int]], dict[str, Any]]
#: Changes one item row: given the row, the values to write (raises to refuse the decision).
Change = Callable[[Mapping[str, Any]], dict[str, Any]]


class NotFound(LookupError):
    """No such request, or no such item in it (404)."""


class Conflict(Exception):
    """The item changed since the reviewer read it, or cannot take this decision now (409)."""


@dataclass(frozen=True)
class Outcome:
    """What a decision changed: the request row (after), the item row (after), the response Bundle."""

    request: dict[str, Any]
    item: dict[str, Any]
    bundle: dict[str, Any]


def queue(store: PasStore, now: dt.datetime, limit: int) -> list[dict[str, Any]]:
    """Pended requests by due time (the most overdue first) with the time left and the codes pended;
    no patient data."""
    if store.holds_nothing():
        return []
    with store._guard(), store.database.engine.connect() as connection:
        rows = connection.execute(select(
            pa_request.c.id, pa_request.c.payer, pa_request.c.plan, pa_request.c.priority, pa_request.c.received_at,
            pa_request.c.due_at, pa_request.c.extended_at).where(pa_request.c.status == PENDED)
            .order_by(pa_request.c.due_at, pa_request.c.id).limit(limit)).all()
        items = connection.execute(select(pa_item.c.request_id, pa_item.c.sequence, pa_item.c.code).where(
            pa_item.c.request_id.in_([r.id for r in rows]), pa_item.c.status == PENDED)
            .order_by(pa_item.c.sequence)).all() if rows else []
    pended: dict[str, list[dict[str, Any]]] = {}
    for row in items:
        pended.setdefault(row.request_id, []).append({"sequence": row.sequence, "code": row.code})
    return [{"id": r.id, "payer": r.payer, "plan": r.plan, "priority": r.priority,
             "received_at": _utc(r.received_at).isoformat(), "due_at": _utc(r.due_at).isoformat(),
             "seconds_left": int((_utc(r.due_at) - now).total_seconds()), "overdue": _utc(r.due_at) < now,
             "extended": r.extended_at is not None, "items": pended.get(r.id, [])} for r in rows]


def request_rows(store: PasStore, request_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The request's row and its item rows by sequence; raises :class:`NotFound`."""
    if store.holds_nothing():
        raise NotFound(request_id)
    with store._guard(), store.database.engine.connect() as connection:
        return _read(connection, request_id)


def _read(connection: Any, request_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    found = connection.execute(select(pa_request).where(pa_request.c.id == request_id)).mappings().first()
    if found is None:
        raise NotFound(request_id)
    items = connection.execute(select(pa_item).where(pa_item.c.request_id == request_id)
                               .order_by(pa_item.c.sequence)).mappings().all()
    return dict(found), [dict(i) for i in items]


def decide(store: PasStore, request_id: str, sequence: int, revision: int, change: Change, rebuild: Rebuild,
           now: dt.datetime, extend: dt.timedelta | None = None) -> Outcome:
    """Apply ``change`` to item ``sequence`` of the request if its revision is still ``revision``;
    store the authorization a certified item becomes, the request's status (complete once no item is
    pended), ``extend`` added to its due time once, and the rebuilt response."""
    with store._guard(), store.database.engine.begin() as connection:
        locked = connection.execute(update(pa_request).where(pa_request.c.id == request_id)
                                    .values(status=pa_request.c.status)).rowcount
        if not locked:
            raise NotFound(request_id)
        request, items = _read(connection, request_id)
        item = next((i for i in items if i["sequence"] == sequence), None)
        if item is None:
            raise NotFound(f"{request_id} item {sequence}")
        if item["revision"] != revision:
            raise Conflict(f"item {sequence} was decided meanwhile by {item['decided_by']} (its revision is now "
                           f"{item['revision']}, not {revision}): read the request again")
        values = {**change(item), "revision": revision + 1}
        connection.execute(update(pa_item).where(pa_item.c.request_id == request_id, pa_item.c.sequence == sequence,
                                                 pa_item.c.revision == revision).values(**values))
        item.update(values)
        if values.get("authorization_number") and request["payer"] and request["member"] and item["code"]:
            connection.execute(insert(pa_authorization).values(
                number=item["authorization_number"], request_id=request_id, sequence=sequence,
                payer=request["payer"], member=request["member"], code=item["code"], valid_from=item["valid_from"],
                valid_to=item["valid_to"], issued_at=now))
        changes: dict[str, Any] = {}
        if extend is not None:
            if request["extended_at"] is not None:
                raise Conflict("the review timeframe of this request was already extended once")
            changes.update(extended_at=now, due_at=_utc(request["due_at"]) + extend)
        if request["status"] == PENDED and not any(i["status"] == PENDED for i in items):
            changes.update(status="complete", decided_at=now)
        request.update(changes)
        bundle = rebuild(request, items, {sequence})
        connection.execute(update(pa_request).where(pa_request.c.id == request_id)
                           .values(response_bundle=bundle, **changes))
    return Outcome(request, item, bundle)


def pended_count(store: PasStore) -> int:
    """How many requests wait for a reviewer."""
    if store.holds_nothing():
        return 0
    with store._guard(), store.database.engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(pa_request)
                                      .where(pa_request.c.status == PENDED)).scalar_one())
