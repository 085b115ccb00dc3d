"""PAS requests, their items' decisions and the authorizations on file, in covreq's database.

The database is opened on first use: ``COVREQ_DATABASE_URL``, else the SQLite file in the data
folder (``COVREQ_DATA_DIR``), so a service that never takes a PAS request never makes one. A
submission is stored in one transaction (request, items, authorizations); the request's
``submission_key`` is unique, so a resubmission, in any worker or replica, finds the first one and
is answered with its response (idempotent), never stored twice.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import logging
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterable, Iterator

from sqlalchemy import and_, func, insert, select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from service.store.database import Database, OnDemand
from service.store.models import pa_authorization, pa_item, pa_request
from service.store.replay import StoreUnavailable
from service.pas.decide import CERTIFIED, PENDED, RULES, ItemDecision
from service.pas.request import PaRequest

log = logging.getLogger("covreq.pas")


def submission_key(request: PaRequest) -> str:
    """What makes two submissions the same: the submitter's transaction identifier and the Claim's identifiers."""
    text = "\n".join(["|".join(request.transaction), *("|".join(i) for i in request.claim_identifiers)])
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class OnFile:
    """An authorization on file."""

    number: str
    code: str
    valid_from: dt.date
    valid_to: dt.date


class PasStore:
    """The PAS tables of one database, opened on first use."""

    def __init__(self, tables: OnDemand) -> None:
        self._tables = tables

    def holds_nothing(self) -> bool:
        """True when no PAS request can have been stored: the embedded database was never made."""
        return not self._tables.in_use()

    @property
    def database(self) -> Database:
        """The open database (opened, and migrated, on first use)."""
        return self._tables.database

    def find(self, key: str) -> dict[str, Any] | None:
        """The stored response Bundle of the submission with ``key``, or None."""
        with self._guard(), self.database.engine.connect() as connection:
            row = connection.execute(select(pa_request.c.response_bundle).where(
                pa_request.c.submission_key == key)).first()
        return row[0] if row else None

    def save(self, request_id: str, key: str, request: PaRequest, decisions: list[ItemDecision],
             received: dt.datetime, due: dt.datetime, ruleset: str, response: dict[str, Any]) -> dict[str, Any]:
        """Store a decided submission; returns the response to give, which is the first one stored
        when the same submission was stored meanwhile (by another worker or replica)."""
        pending = any(d.status == PENDED for d in decisions)
        try:
            with self._guard(), self.database.engine.begin() as connection:
                connection.execute(insert(pa_request).values(
                    id=request_id, submission_key=key, pas_version=request.version.code, payer=request.payer.payer,
                    plan=request.payer.plan, member=request.member, claim_identifiers=[list(i) for i in request.claim_identifiers],
                    priority=request.priority, status=PENDED if pending else "complete", received_at=received,
                    due_at=due, decided_at=None if pending else received, ruleset=ruleset,
                    request_bundle=request.bundle, response_bundle=response))
                connection.execute(insert(pa_item), [_item_row(request_id, d, received) for d in decisions])
                on_file = [_authorization_row(request_id, request, d, received) for d in decisions
                           if d.status == CERTIFIED and request.payer.payer and request.member and d.item.code]
                if on_file:
                    connection.execute(insert(pa_authorization), on_file)
        except IntegrityError:
            found = self.find(key)
            if found is None:
                raise
            return found
        return response

    def inquire(self, payer: str | None, member: str | None,
                identifiers: Iterable[tuple[str, str]]) -> list[dict[str, Any]]:
        """The stored responses of the member's requests sharing a Claim identifier with the inquiry."""
        wanted = {tuple(i) for i in identifiers}
        if not wanted or member is None or self.holds_nothing():
            return []
        with self._guard(), self.database.engine.connect() as connection:
            rows = connection.execute(select(pa_request.c.claim_identifiers, pa_request.c.response_bundle).where(
                pa_request.c.member == member, pa_request.c.payer == payer
                if payer is not None else pa_request.c.payer.is_(None)).order_by(pa_request.c.received_at)).all()
        return [bundle for ids, bundle in rows if wanted & {tuple(i) for i in ids}]

    def on_file(self, payer: str, member: str, codes: Iterable[str]) -> list[OnFile]:
        """The authorizations on file for the member and any of ``codes``."""
        if self.holds_nothing():
            return []
        with self._guard(), self.database.engine.connect() as connection:
            rows = connection.execute(select(
                pa_authorization.c.number, pa_authorization.c.code, pa_authorization.c.valid_from,
                pa_authorization.c.valid_to).where(and_(
                    pa_authorization.c.payer == payer, pa_authorization.c.member == member,
                    pa_authorization.c.code.in_(list(codes))))).all()
        return [OnFile(*row) for row in rows]

    def overdue(self, now: dt.datetime, limit: int = 100) -> list[dict[str, Any]]:
        """Requests still pended past their due time, the most overdue first (no PHI: ids, times, codes)."""
        if self.holds_nothing():
            return []
        with self._guard(), self.database.engine.connect() as connection:
            rows = connection.execute(select(
                pa_request.c.id, pa_request.c.payer, pa_request.c.priority, pa_request.c.received_at,
                pa_request.c.due_at).where(pa_request.c.status == PENDED, pa_request.c.due_at < now)
                .order_by(pa_request.c.due_at).limit(limit)).all()
        return [{"id": r.id, "payer": r.payer, "priority": r.priority, "received_at": _utc(r.received_at).isoformat(),
                 "due_at": _utc(r.due_at).isoformat()} for r in rows]

    def overdue_count(self, now: dt.datetime | None = None) -> int | None:
        """How many requests are still pended past their due time; None when the database cannot be read
        (the metric keeps its last value; /metrics itself never fails for it)."""
        if self.holds_nothing():
            return 0
        try:
            with self._guard(), self.database.engine.connect() as connection:
                return int(connection.execute(select(func.count()).select_from(pa_request).where(
                    pa_request.c.status == PENDED,
                    pa_request.c.due_at < (now or dt.datetime.now(dt.timezone.utc)))).scalar_one())
        except StoreUnavailable:
            return None

    @staticmethod
    @contextmanager
    def _guard() -> Iterator[None]:
        """A database failure (or a database that cannot be opened) as :class:`StoreUnavailable` (503)."""
        try:
            yield
        except IntegrityError:
            raise
        except (SQLAlchemyError, ValueError) as exc:
            log.error("the PAS store failed", extra={"event": "pas-store-failed", "error": type(exc).__name__})
            raise StoreUnavailable("the PAS store (COVREQ_DATABASE_URL) is unavailable") from None


def _utc(moment: dt.datetime) -> dt.datetime:
    """SQLite returns naive datetimes: covreq stores UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)


def _item_row(request_id: str, d: ItemDecision, received: dt.datetime) -> dict[str, Any]:
    return {"request_id": request_id, "sequence": d.item.sequence, "code": d.item.code, "system": d.item.system,
            "date_of_service": dt.date.fromisoformat(d.item.date_of_service) if d.item.date_of_service else None,
            "place_of_service": d.item.place_of_service, "status": d.status, "review_action": d.review_action,
            "decided_by": None if d.status == PENDED else RULES, "decided_at": None if d.status == PENDED else received,
            "authorization_number": d.authorization, "valid_from": d.valid_from, "valid_to": d.valid_to,
            "owed": d.owed, "findings": d.findings}


def _authorization_row(request_id: str, request: PaRequest, d: ItemDecision, received: dt.datetime) -> dict[str, Any]:
    return {"number": d.authorization, "request_id": request_id, "sequence": d.item.sequence,
            "payer": request.payer.payer, "member": request.member, "code": d.item.code,
            "valid_from": d.valid_from, "valid_to": d.valid_to, "issued_at": received}
