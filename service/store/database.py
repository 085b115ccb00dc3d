"""The database a service uses, as its settings (or ``covreq serve --workers N``) ask."""
from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from service.settings import Settings
from service.store import migrate
from service.store.engine import default_url, describe, open_engine
from service.store.replay import DatabaseReplay

log = logging.getLogger("covreq.store")
DATABASE_URL_ENV = "COVREQ_DATABASE_URL"


@dataclass(frozen=True)
class Database:
    """An open database at the newest migration, and the stores kept in it."""

    engine: Engine
    replay: DatabaseReplay

    @classmethod
    def open(cls, url: str) -> "Database":
        """Open ``url`` and run the migrations it lacks (under a lock: service/store/migrate.py);
        raises ValueError, naming the database without its password, when it cannot be used."""
        engine = open_engine(url)
        try:
            revision = migrate.upgrade(engine)
        except (SQLAlchemyError, OSError) as exc:
            engine.dispose()
            raise ValueError(f"the database {describe(url)} cannot be used: {type(exc).__name__}: "
                             f"{str(exc).splitlines()[0][:200]}") from None
        log.info("database ready", extra={"event": "database-ready", "database": describe(url), "revision": revision})
        return cls(engine, DatabaseReplay(engine))

    @classmethod
    def from_settings(cls, settings: Settings) -> "Database | None":
        """The configured database (``COVREQ_DATABASE_URL``), or None: state stays in the process."""
        return cls.open(settings.database_url) if settings.database_url else None

    def close(self) -> None:
        """Close the pooled connections."""
        self.engine.dispose()


@contextmanager
def shared_by_workers(settings: Settings, workers: int) -> Iterator[None]:
    """With several workers and no ``COVREQ_DATABASE_URL``, give them the embedded database (a SQLite
    file in ``COVREQ_DATA_DIR``), migrated once here before they start."""
    if workers <= 1 or settings.database_url:
        yield
        return
    url = default_url(settings.data_dir)
    Database.open(url).close()
    os.environ[DATABASE_URL_ENV] = url
    try:
        yield
    finally:
        del os.environ[DATABASE_URL_ENV]
