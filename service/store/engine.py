"""Opening covreq's database from its URL: the driver, SQLite's pragmas, the default file."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url

#: Milliseconds a SQLite writer waits for another process's write to finish before giving up.
SQLITE_BUSY_MS = 5000
#: Seconds a PostgreSQL connection may take to open.
CONNECT_SECONDS = 5
#: PostgreSQL connections a process keeps open, and the most it opens beyond them under load.
POOL_SIZE = 5
POOL_OVERFLOW = 5
#: The default database's file name in the data folder.
DEFAULT_FILE = "covreq.db"


def default_url(data_dir: Path) -> str:
    """The embedded database: a SQLite file in ``data_dir`` (the folder is made, owner-only, when it is opened)."""
    return f"sqlite:///{(data_dir / DEFAULT_FILE).resolve()}"


def normalized(url: str) -> str:
    """``url`` with the driver covreq installs: ``postgresql://`` (or ``postgres://``) means psycopg 3;
    raises ValueError for a URL SQLAlchemy cannot parse or a database other than SQLite or PostgreSQL."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url.removeprefix("postgres://")
    try:
        parsed = make_url(url)
    except Exception:  # noqa: BLE001 - SQLAlchemy raises ArgumentError or ValueError; never echo the URL (a password)
        raise ValueError("COVREQ_DATABASE_URL is not a database URL (sqlite:///PATH or postgresql://...)") from None
    if parsed.get_backend_name() == "postgresql" and parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise ValueError(f"COVREQ_DATABASE_URL names a {parsed.get_backend_name()} database; covreq takes sqlite or postgresql")
    return parsed.render_as_string(hide_password=False)


def open_engine(url: str) -> Engine:
    """An engine for ``url``: SQLite in WAL mode with a busy timeout (several worker processes write
    to one file), PostgreSQL with a connect timeout and connections checked before use."""
    url = normalized(url)
    if make_url(url).get_backend_name() == "sqlite":
        engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_MS / 1000})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=POOL_SIZE, max_overflow=POOL_OVERFLOW,
                         connect_args={"connect_timeout": CONNECT_SECONDS})


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    """WAL (readers never wait for the writer), a busy timeout, and NORMAL sync (safe in WAL)."""
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_MS}")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def describe(url: str) -> str:
    """``url`` as it may be logged: the password hidden."""
    return make_url(normalized(url)).render_as_string(hide_password=True)
