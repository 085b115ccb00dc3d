"""The database a service uses, as its settings (or ``covreq serve --workers N``) ask."""
from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import MutableMapping

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from service.settings import Settings
from service.store import migrate
from service.store.engine import DEFAULT_FILE, default_url, describe, open_engine
from service.store.replay import DatabaseReplay

log = logging.getLogger("covreq.store")
DATABASE_URL_ENV = "COVREQ_DATABASE_URL"
DATA_DIR_ENV = "COVREQ_DATA_DIR"


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
            if engine.dialect.name == "sqlite" and engine.url.database not in (None, "", ":memory:"):
                Path(engine.url.database).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
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


class OnDemand:
    """The database of the tables a service fills only when asked to (PAS requests, subscriptions):
    the service's shared one when it has one, else the configured or embedded one, opened (and
    migrated) on first use, so that a service never asked creates no file."""

    def __init__(self, settings: Settings, database: Database | None = None) -> None:
        self._url = settings.database_url or default_url(settings.data_dir)
        #: the embedded database's file, which holds nothing before a first use made it
        self._embedded = None if settings.database_url else settings.data_dir / DEFAULT_FILE
        self._database, self._opened, self._lock = database, False, threading.Lock()

    @property
    def database(self) -> Database:
        """The open database (opened, and migrated, on first use)."""
        with self._lock:
            if self._database is None:
                self._database, self._opened = Database.open(self._url), True
            return self._database

    def in_use(self) -> bool:
        """Whether the database can hold rows: open, configured, or the embedded file already made."""
        return self._database is not None or self._embedded is None or self._embedded.exists()

    def close(self) -> None:
        """Close the database if it was opened here (a shared one is the service's to close)."""
        with self._lock:
            if self._opened and self._database is not None:
                self._database.close()


def share_between_workers(env: MutableMapping[str, str] = os.environ) -> None:
    """Before ``covreq serve --workers N`` starts: unless ``COVREQ_DATABASE_URL`` names a database,
    name the embedded one (a SQLite file in ``COVREQ_DATA_DIR``), which every worker then opens."""
    if not env.get(DATABASE_URL_ENV):
        env[DATABASE_URL_ENV] = default_url(Path(env.get(DATA_DIR_ENV) or Settings.data_dir))
