"""Single-use JWT ids (``jti``) refused everywhere once used: a row per (issuer, jti) in the database.

The first use is an INSERT; the primary key (issuer, jti) makes a second INSERT fail in whichever
worker or replica it is tried, so the check needs no read-then-write race. A row is kept until its
``expires_at`` (the token's ``exp`` plus the clock leeway: after it the token is refused as
expired anyway); expired rows are purged in batches of at most :data:`PURGE_BATCH`, at most every
:data:`PURGE_SECONDS` while the last batch came back short (at once after a full one), by the
process whose insert found the purge due.

Other single-use ids (the SMART client assertions' ``jti``) may share the table: the first element
of the key is then a scope of their own (``smart-client:<client_id>``), never an issuer URL.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable

from sqlalchemy import Engine, delete, insert, select, tuple_
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from service.store.models import MAX_KEY_CHARS, jwt_replay

log = logging.getLogger("covreq.store")
#: Most expired rows one purge deletes (one short transaction; a busy service purges again at once).
PURGE_BATCH = 1000
#: Seconds between purges while each finds fewer than :data:`PURGE_BATCH` expired rows.
PURGE_SECONDS = 30.0


class StoreUnavailable(Exception):
    """The database could not be reached or written; the caller is answered 503, never let through."""


class DatabaseReplay:
    """Remembers (issuer, jti) pairs in the database until they expire. Safe across threads, processes
    and replicas sharing the database."""

    def __init__(self, engine: Engine, clock: Callable[[], float] = time.time) -> None:
        self.engine, self.clock = engine, clock
        self._next_purge = 0.0
        self._lock = threading.Lock()

    def first_use(self, key: tuple[str, str], expires_at: float) -> bool:
        """True the first time (issuer, jti) ``key`` is offered before ``expires_at`` (Unix seconds),
        False for a replay; raises :class:`StoreUnavailable` when the database fails."""
        issuer, jti = key
        if len(issuer) > MAX_KEY_CHARS or len(jti) > MAX_KEY_CHARS:
            return False  # cannot be stored, so cannot be vouched for
        now = self.clock()
        try:
            if self._insert(issuer, jti, expires_at):
                return True
            # taken: by a live use (a replay), or by an expired row not yet purged, which frees the key
            with self.engine.begin() as connection:
                freed = connection.execute(delete(jwt_replay).where(
                    jwt_replay.c.issuer == issuer, jwt_replay.c.jti == jti, jwt_replay.c.expires_at < now)).rowcount
            return bool(freed) and self._insert(issuer, jti, expires_at)
        except SQLAlchemyError as exc:
            log.error("the replay store failed", extra={"event": "replay-store-failed", "error": type(exc).__name__})
            raise StoreUnavailable("the replay store (COVREQ_DATABASE_URL) is unavailable") from None
        finally:
            self._purge_if_due(now)

    def _insert(self, issuer: str, jti: str, expires_at: float) -> bool:
        """Insert the row; False when the key is taken."""
        try:
            with self.engine.begin() as connection:
                connection.execute(insert(jwt_replay).values(issuer=issuer, jti=jti, expires_at=expires_at))
            return True
        except IntegrityError:
            return False

    def _purge_if_due(self, now: float) -> None:
        """Delete one batch of expired rows when a purge is due; a failure is logged, and tried again later."""
        with self._lock:
            if now < self._next_purge:
                return
            self._next_purge = now + PURGE_SECONDS
        try:
            deleted = self.purge(now)
        except SQLAlchemyError as exc:
            log.warning("expired jti rows not purged", extra={"event": "replay-purge-failed",
                                                              "error": type(exc).__name__})
            return
        if deleted >= PURGE_BATCH:
            with self._lock:
                self._next_purge = now

    def purge(self, now: float) -> int:
        """Delete at most :data:`PURGE_BATCH` rows expired before ``now``; how many were deleted."""
        expired = select(jwt_replay.c.issuer, jwt_replay.c.jti).where(
            jwt_replay.c.expires_at < now).limit(PURGE_BATCH)
        with self.engine.begin() as connection:
            return connection.execute(delete(jwt_replay).where(
                tuple_(jwt_replay.c.issuer, jwt_replay.c.jti).in_(expired))).rowcount
