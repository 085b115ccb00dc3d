"""``covreq report pa-metrics``: the database opened read-only in intent (never migrated by a
report), the metrics computed (service/pas/pa_metrics.py) and written."""
from __future__ import annotations

import datetime as dt
import sys

from sqlalchemy.exc import SQLAlchemyError

from service.pas.pa_metrics import pa_metrics, render
from service.store import migrate
from service.store.engine import describe, open_engine

EXIT_OK, EXIT_PROBLEMS, EXIT_USAGE = 0, 1, 2


def write_pa_metrics(url: str, start: dt.date, end: dt.date, fmt: str) -> int:
    """Write the metrics of the requests received from ``start`` to ``end`` in ``url``'s database to
    standard output; the exit code (1: the database cannot be read or is not at covreq's newest
    schema, 2: a bad period or URL)."""
    if end < start:
        print(f"covreq report pa-metrics: --to {end} is before --from {start}", file=sys.stderr)
        return EXIT_USAGE
    try:
        engine = open_engine(url)
    except ValueError as exc:
        print(f"covreq report pa-metrics: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        revision = migrate.current(engine)
        if revision != migrate.head():
            print(f"covreq report pa-metrics: the database {describe(url)} is at schema revision {revision}, not "
                  f"{migrate.head()}: it holds no PAS decisions yet, or `covreq serve` has not migrated it",
                  file=sys.stderr)
            return EXIT_PROBLEMS
        metrics = pa_metrics(engine, start, end)
    except SQLAlchemyError as exc:
        print(f"covreq report pa-metrics: the database {describe(url)} cannot be read: {type(exc).__name__}",
              file=sys.stderr)
        return EXIT_PROBLEMS
    finally:
        engine.dispose()
    sys.stdout.write(render(metrics, fmt))
    return EXIT_OK
