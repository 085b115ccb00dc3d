"""Bringing the database's schema to the newest migration (``alembic upgrade head``), once.

Every process runs :func:`upgrade` at start; a lock makes concurrent starts (the workers of a
replica, or replicas rolling out together) wait for the first, after which it is a no-op:
PostgreSQL takes a transaction-level advisory lock, SQLite an exclusive lock on a file beside the
database. The migrations run in that transaction, so a failed one leaves the schema as it was
(PostgreSQL; SQLite commits each statement of its DDL).
"""
from __future__ import annotations

import fcntl
import logging
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, text

log = logging.getLogger("covreq.store")
MIGRATIONS = Path(__file__).with_name("migrations")
#: Alembic's bookkeeping table: named for covreq, so a database shared with another application is not confused.
VERSION_TABLE = "covreq_alembic_version"
#: The PostgreSQL advisory lock key of covreq's migrations (any fixed 64-bit number).
ADVISORY_LOCK = 0x636F7672657101


def config(connection: Connection | None = None) -> Config:
    """Alembic's configuration for covreq's migrations, run on ``connection``."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


def head() -> str | None:
    """The newest migration's revision."""
    return ScriptDirectory.from_config(config()).get_current_head()


def current(engine: Engine) -> str | None:
    """The revision the database is at (None: never migrated)."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE}).get_current_revision()


def upgrade(engine: Engine) -> str | None:
    """Run the migrations the database lacks, under the lock; the revision it is at afterwards."""
    with _locked(engine), engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": ADVISORY_LOCK})
        before = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE}).get_current_revision()
        command.upgrade(config(connection), "head")
        after = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE}).get_current_revision()
    if before != after:
        log.info("database migrated", extra={"event": "database-migrated", "from": before, "to": after})
    return after


@contextmanager
def _locked(engine: Engine) -> Iterator[None]:
    """For a SQLite file, an exclusive lock on ``<file>.migrate.lock`` while the block runs."""
    database = engine.url.database if engine.dialect.name == "sqlite" else None
    if not database or database == ":memory:":
        yield
        return
    with open(f"{database}.migrate.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
