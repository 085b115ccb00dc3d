"""``covreq report pa-metrics`` on a million stored decisions:
``.venv/bin/python -m bench.pa_metrics [--requests 1000000] [--rounds 3] [--database-url URL]``.

The database (a SQLite file in a temporary folder, or ``--database-url``, which must be an empty
database) is migrated, then filled with ``--requests`` decided PAS requests of one item each, spread
over 2025 (seeded, so every run stores the same rows): four in five standard, one in five expedited;
70% certified, 5% modified, 20% denied (a third of those appealed, half of those overturned), 5%
still pended; one in ten with an extended review; decided 0 to 200 hours after receipt. Rows are
written by the driver's own bulk path (PostgreSQL ``COPY``, SQLite ``executemany`` in one
transaction), not through the service. Then the report for the year is computed ``--rounds`` times
(the figure is the median), as the command does it: every aggregate by the database.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

from service.pas.pa_metrics import pa_metrics
from service.store.database import Database

REQUEST_COLUMNS = ("id", "submission_key", "pas_version", "payer", "member", "claim_identifiers", "priority",
                   "status", "received_at", "due_at", "decided_at", "ruleset", "request_bundle", "response_bundle",
                   "extended_at")
ITEM_COLUMNS = ("request_id", "sequence", "code", "status", "review_action", "owed", "findings", "revision",
                "appeal_outcome")
YEAR = dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc)
BATCH = 50_000


def _stamp(moment: dt.datetime | None, sqlite: bool) -> Any:
    """A time as the driver takes it: SQLAlchemy's SQLite text form, else the datetime."""
    if moment is None or not sqlite:
        return moment
    return moment.astimezone(dt.timezone.utc).replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")


def rows(count: int, sqlite: bool, seed: int = 2025) -> Iterator[tuple[tuple[Any, ...], tuple[Any, ...]]]:
    """``count`` (request row, item row) pairs, seeded."""
    rng = random.Random(seed)
    for number in range(count):
        request_id = str(uuid.UUID(int=rng.getrandbits(128)))
        priority = "expedited" if rng.random() < 0.2 else "standard"
        received = YEAR + dt.timedelta(seconds=rng.randrange(365 * 86400))
        roll = rng.random()
        status, action, appeal = (("certified", "A1", None) if roll < 0.70 else ("modified", "A6", None)
                                  if roll < 0.75 else ("denied", "A3", None) if roll < 0.95 else ("pended", "A4", None))
        if status == "denied" and rng.random() < 1 / 3:
            status, action, appeal = ("certified", "A1", "approved") if rng.random() < 0.5 else ("denied", "A3", "upheld")
        decided = None if status == "pended" else received + dt.timedelta(hours=rng.uniform(0, 200))
        extended = received if rng.random() < 0.1 else None
        request = (request_id, f"{number:064x}", "2.0.1", "medicare", f"M{number}", "[]", priority,
                   "pended" if status == "pended" else "complete", _stamp(received, sqlite),
                   _stamp(received + dt.timedelta(days=7), sqlite), _stamp(decided, sqlite), "bench", "{}", "{}",
                   _stamp(extended, sqlite))
        yield request, (request_id, 1, "15823", status, action, "[]", "{}", 1, appeal)


def fill(database: Database, count: int) -> float:
    """Store ``count`` requests in ``database``; the seconds it took."""
    started, sqlite = time.perf_counter(), database.engine.dialect.name == "sqlite"
    generated = rows(count, sqlite)
    raw = database.engine.raw_connection()
    try:
        cursor = raw.cursor()
        while True:
            batch = [pair for _, pair in zip(range(BATCH), generated)]
            if not batch:
                break
            if sqlite:
                cursor.executemany(f"INSERT INTO pa_request ({', '.join(REQUEST_COLUMNS)}) VALUES "
                                   f"({', '.join('?' * len(REQUEST_COLUMNS))})", [r for r, _ in batch])
                cursor.executemany(f"INSERT INTO pa_item ({', '.join(ITEM_COLUMNS)}) VALUES "
                                   f"({', '.join('?' * len(ITEM_COLUMNS))})", [i for _, i in batch])
                continue
            for table, columns, index in (("pa_request", REQUEST_COLUMNS, 0), ("pa_item", ITEM_COLUMNS, 1)):
                with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                    for pair in batch:
                        copy.write_row(pair[index])
        raw.commit()
    finally:
        raw.close()
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    """Fill the database, time the report; print the figures as JSON."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--database-url", help="an empty database (default: SQLite in a temporary folder)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        database = Database.open(args.database_url or f"sqlite:///{Path(folder) / 'covreq.db'}")
        try:
            filled = fill(database, args.requests)
            timings, metrics = [], {}
            for _ in range(args.rounds):
                started = time.perf_counter()
                metrics = pa_metrics(database.engine, dt.date(2025, 1, 1), dt.date(2025, 12, 31))
                timings.append(time.perf_counter() - started)
        finally:
            database.close()
    json.dump({"database": database.engine.dialect.name, "requests": args.requests, "fill_s": round(filled, 1),
               "report_s": [round(t, 2) for t in timings], "report_median_s": round(statistics.median(timings), 2),
               "metrics": metrics}, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
