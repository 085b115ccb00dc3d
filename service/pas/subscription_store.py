"""PAS subscriptions in covreq's database, shared by workers and replicas.

The database is opened on first use (``COVREQ_DATABASE_URL``, else the SQLite file in the data
folder), so a service that never takes a Subscription never makes one. Each subscription is a row
with its channel and its count of events sent; the organization identifiers it filters on are
rows of their own, indexed, so that finding the subscriptions of a decided request reads only theirs.
Two workers never send one heartbeat: the one whose update of ``last_sent_at`` lands sends it.
"""
from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (Column, Float, ForeignKey, Index, Integer, String, Table, Text, and_, delete, insert, or_,
                        select, update)

from service.pas.subscriptions import Channel, SubscriptionRequest, stored_resource
from service.store.database import Database, OnDemand
from service.store.models import metadata

ACTIVE, REQUESTED, ERROR, OFF = "active", "requested", "error", "off"
#: Most subscriptions one search returns.
SEARCH_LIMIT = 100

pas_subscription = Table(
    "pas_subscription", metadata,
    Column("id", String(36), primary_key=True),
    Column("status", String(16), nullable=False),
    Column("endpoint", String(2048), nullable=False),
    Column("payload", String(32), nullable=False),
    Column("content", String(16), nullable=False),
    Column("headers", Text, nullable=False),
    Column("heartbeat", Integer),
    Column("end_at", Float),
    Column("base", String(2048), nullable=False),
    Column("resource", Text, nullable=False),
    Column("events", Integer, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("last_sent_at", Float),
    Column("last_error", String(200)),
    Column("owner", String(512), nullable=False),
)
pas_subscription_org = Table(
    "pas_subscription_org", metadata,
    Column("org", String(256), primary_key=True),
    Column("subscription_id", String(36), ForeignKey("pas_subscription.id", ondelete="CASCADE"), primary_key=True),
    Index("ix_pas_subscription_org_subscription", "subscription_id"),
)


@dataclass(frozen=True)
class Subscription:
    """A stored subscription."""

    id: str
    status: str
    channel: Channel
    base: str
    events: int
    end_at: float | None
    resource: dict[str, Any]
    last_sent_at: float | None
    owner: str

    def as_resource(self) -> dict[str, Any]:
        """The Subscription resource with its current status."""
        return {**self.resource, "status": self.status}


def _row(row: Any) -> Subscription:
    headers = tuple(tuple(pair) for pair in json.loads(row.headers))
    channel = Channel(row.endpoint, row.payload, row.content, headers, row.heartbeat)  # type: ignore[arg-type]
    return Subscription(row.id, row.status, channel, row.base, row.events, row.end_at, json.loads(row.resource),
                        row.last_sent_at, row.owner)


def _columns(request: SubscriptionRequest, subscription_id: str, base: str) -> dict[str, Any]:
    """The columns a create or an update writes."""
    channel = request.channel
    return {"status": REQUESTED, "endpoint": channel.endpoint, "payload": channel.payload, "content": channel.content,
            "headers": json.dumps(channel.headers), "heartbeat": channel.heartbeat,
            "end_at": request.end.timestamp() if request.end else None, "base": base,
            "resource": json.dumps(stored_resource(request.resource, subscription_id, REQUESTED))}


def _owned(subscription_id: str, owner: str) -> Any:
    """The row of that id, when ``owner`` made it."""
    return and_(pas_subscription.c.id == subscription_id, pas_subscription.c.owner == owner)


class SubscriptionStore:
    """The subscription tables of one database, opened on first use."""

    def __init__(self, tables: OnDemand) -> None:
        self._tables = tables

    @property
    def database(self) -> Database:
        """The open database (opened, and migrated, on first use)."""
        return self._tables.database

    def in_use(self) -> bool:
        """Whether the database is open or exists: a configured URL, or the default file already made."""
        return self._tables.in_use()

    def create(self, request: SubscriptionRequest, subscription_id: str, base: str, now: dt.datetime,
               owner: str) -> Subscription:
        """Store a new subscription of ``owner`` (the caller who made it), status ``requested``
        until its handshake is answered."""
        with self.database.engine.begin() as connection:
            connection.execute(insert(pas_subscription).values(id=subscription_id, **_columns(request, subscription_id, base),
                                                               events=0, created_at=now.timestamp(), owner=owner))
            connection.execute(insert(pas_subscription_org), [{"org": org, "subscription_id": subscription_id}
                                                              for org in request.orgs])
        return self.get(subscription_id)  # type: ignore[return-value]

    def replace(self, request: SubscriptionRequest, subscription_id: str, base: str, owner: str) -> Subscription | None:
        """Replace a subscription's channel, filter and resource (an update), status ``requested``
        again until the new handshake is answered; its events count goes on. None when ``owner``
        has none with that id."""
        with self.database.engine.begin() as connection:
            changed = connection.execute(update(pas_subscription).where(_owned(subscription_id, owner))
                                         .values(**_columns(request, subscription_id, base), last_error=None)).rowcount
            if not changed:
                return None
            connection.execute(delete(pas_subscription_org).where(pas_subscription_org.c.subscription_id == subscription_id))
            connection.execute(insert(pas_subscription_org), [{"org": org, "subscription_id": subscription_id}
                                                              for org in request.orgs])
        return self.get(subscription_id)

    def get(self, subscription_id: str, owner: str | None = None) -> Subscription | None:
        """The subscription with that id (of ``owner``, when given), or None."""
        where = pas_subscription.c.id == subscription_id if owner is None else _owned(subscription_id, owner)
        with self.database.engine.connect() as connection:
            row = connection.execute(select(pas_subscription).where(where)).first()
        return _row(row) if row else None

    def search(self, owner: str, status: str | None = None) -> list[Subscription]:
        """The subscriptions of ``owner`` (of one status when given), oldest first, at most :data:`SEARCH_LIMIT`."""
        query = (select(pas_subscription).where(pas_subscription.c.owner == owner)
                 .order_by(pas_subscription.c.created_at).limit(SEARCH_LIMIT))
        if status is not None:
            query = query.where(pas_subscription.c.status == status)
        with self.database.engine.connect() as connection:
            return [_row(row) for row in connection.execute(query)]

    def set_status(self, subscription_id: str, status: str, error: str | None = None,
                   sent_at: dt.datetime | None = None) -> None:
        """Record the subscription's status (and why delivery failed, when it did; when a
        notification went, ``sent_at``: the next heartbeat is a period after it)."""
        values: dict[str, Any] = {"status": status, "last_error": error}
        if sent_at is not None:
            values["last_sent_at"] = sent_at.timestamp()
        with self.database.engine.begin() as connection:
            connection.execute(update(pas_subscription).where(pas_subscription.c.id == subscription_id).values(**values))

    def delete(self, subscription_id: str, owner: str) -> bool:
        """Remove a subscription of ``owner``; False when it has none with that id."""
        with self.database.engine.begin() as connection:
            if not connection.execute(delete(pas_subscription).where(_owned(subscription_id, owner))).rowcount:
                return False
            connection.execute(delete(pas_subscription_org).where(pas_subscription_org.c.subscription_id == subscription_id))
            return True

    def matching(self, orgs: tuple[str, ...], now: dt.datetime) -> list[Subscription]:
        """The live subscriptions (active, or in error after a failed delivery) filtering on one of ``orgs``."""
        ids = select(pas_subscription_org.c.subscription_id).where(pas_subscription_org.c.org.in_(orgs))
        query = select(pas_subscription).where(
            pas_subscription.c.id.in_(ids), pas_subscription.c.status.in_((ACTIVE, ERROR)),
            or_(pas_subscription.c.end_at.is_(None), pas_subscription.c.end_at > now.timestamp()))
        with self.database.engine.connect() as connection:
            return [_row(row) for row in connection.execute(query)]

    def next_event(self, subscription_id: str, now: dt.datetime) -> int:
        """Count one more event for the subscription; its number (events since the subscription started)."""
        with self.database.engine.begin() as connection:
            return int(connection.execute(
                update(pas_subscription).where(pas_subscription.c.id == subscription_id)
                .values(events=pas_subscription.c.events + 1, last_sent_at=now.timestamp())
                .returning(pas_subscription.c.events)).scalar_one())

    def claim_heartbeats(self, now: dt.datetime) -> list[Subscription]:
        """The active subscriptions whose heartbeat is due, each claimed by this caller alone."""
        stamp = now.timestamp()
        due = select(pas_subscription).where(
            pas_subscription.c.status == ACTIVE, pas_subscription.c.heartbeat.is_not(None),
            or_(pas_subscription.c.last_sent_at.is_(None),
                pas_subscription.c.last_sent_at + pas_subscription.c.heartbeat <= stamp))
        claimed = []
        with self.database.engine.begin() as connection:
            for row in connection.execute(due).all():
                last = pas_subscription.c.last_sent_at
                won = connection.execute(update(pas_subscription).where(
                    and_(pas_subscription.c.id == row.id,
                         last.is_(None) if row.last_sent_at is None else last == row.last_sent_at))
                    .values(last_sent_at=stamp)).rowcount
                if won:
                    claimed.append(_row(row))
        return claimed
