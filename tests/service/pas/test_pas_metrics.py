"""`covreq report pa-metrics`: the CMS-0057-F metrics from stored decisions, on SQLite and PostgreSQL,
checked against a period whose every request is known (approved, denied, overturned on appeal,
modified after an extended review, still pended, not needing PA, outside the period)."""
from __future__ import annotations

import datetime as dt
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from pg_cluster import postgres_url  # noqa: F401 - the session's PostgreSQL cluster
from sqlalchemy import insert

from covreq.cli import main
from service.pas.pa_metrics import pa_metrics
from service.store.database import Database
from service.store.models import pa_item, pa_request

START = dt.datetime(2001, 3, 1, 8, tzinfo=dt.timezone.utc)


def _request(connection: Any, priority: str, hours: float | None, *items: dict[str, Any],
             received: dt.datetime = START, extended: bool = False) -> None:
    """One stored request, decided ``hours`` after receipt (None: still pended), with ``items``."""
    request_id = str(uuid.uuid4())
    connection.execute(insert(pa_request).values(
        id=request_id, submission_key=uuid.uuid4().hex, pas_version="2.0.1", payer="medicare", member="m",
        claim_identifiers=[], priority=priority, status="pended" if hours is None else "complete",
        received_at=received, due_at=received + dt.timedelta(days=7),
        decided_at=None if hours is None else received + dt.timedelta(hours=hours), ruleset="r",
        request_bundle={}, response_bundle={}, extended_at=received if extended else None))
    connection.execute(insert(pa_item), [{"request_id": request_id, "sequence": n + 1, "code": "15823",
                                          "review_action": "A4", "owed": [], "findings": {}, **item}
                                         for n, item in enumerate(items)])


def _period(url: str) -> None:
    """The known period of 2001: seven standard, two expedited requests counted, two left out."""
    database = Database.open(url)
    certified, denied = {"status": "certified"}, {"status": "denied"}
    with database.engine.begin() as connection:
        _request(connection, "standard", 0, certified)  # certified by the rules at receipt
        _request(connection, "standard", 48, certified, {"status": "not-required"})
        _request(connection, "standard", 24, denied, certified)  # one item denied: the request is denied
        _request(connection, "standard", 72, {"status": "certified", "appeal_outcome": "approved"})
        _request(connection, "standard", 200, {"status": "modified"}, extended=True)
        _request(connection, "standard", None, {"status": "pended"})
        _request(connection, "standard", 1, {"status": "not-required"})  # no PA needed: not counted
        _request(connection, "standard", 5, certified, received=dt.datetime(2002, 1, 1, tzinfo=dt.timezone.utc))
        _request(connection, "expedited", 10, certified)
        _request(connection, "expedited", 30, {"status": "denied", "appeal_outcome": "upheld"})
    database.close()


def _expected(metrics: dict[str, Any]) -> None:
    standard, expedited = metrics["standard"], metrics["expedited"]
    assert (standard["decided"], standard["pending"], standard["approved"], standard["denied"]) == (5, 1, 3, 2)
    assert (standard["approved_percent"], standard["denied_percent"], standard["approved_after_appeal_percent"]) == \
        (60.0, 40.0, 20.0)
    assert standard["modified"] == 1 and standard["average_hours"] == 68.8 and standard["median_hours"] == 48.0
    assert metrics["extended_approved_percent"] == round(100 / 7, 2)
    assert (expedited["approved_percent"], expedited["denied_percent"], expedited["approved_after_appeal_percent"]) \
        == (50.0, 50.0, 0.0)
    assert expedited["average_hours"] == 20.0 and expedited["median_hours"] == 20.0


def test_the_metrics_of_a_known_period_on_sqlite_through_the_command_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'covreq.db'}"
    _period(url)
    assert main(["report", "pa-metrics", "--database", url, "--from", "2001-01-01", "--to", "2001-12-31",
                 "--format", "json"]) == 0
    _expected(json.loads(capsys.readouterr().out))
    assert main(["report", "pa-metrics", "--database", url, "--from", "2001-01-01", "--to", "2001-12-31"]) == 0
    text = capsys.readouterr().out
    assert "(c)(4) standard requests approved after appeal, %" in text and "422.122(c)" in text
    assert main(["report", "pa-metrics", "--database", url, "--from", "2001-01-01", "--to", "2001-12-31",
                 "--format", "csv"]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert rows[0] == "metric,value,from,to" and "(c)(8) standard requests: median hours to decision,48.0,2001-01-01,2001-12-31" in rows


def test_a_median_of_an_even_count_is_the_mean_of_the_middle_two(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'covreq.db'}"
    database = Database.open(url)
    with database.engine.begin() as connection:
        for hours in (1, 2, 10, 50):
            _request(connection, "expedited", hours, {"status": "certified"})
    metrics = pa_metrics(database.engine, dt.date(2001, 3, 1), dt.date(2001, 3, 1))
    assert metrics["expedited"]["median_hours"] == 6.0 and metrics["standard"]["median_hours"] is None
    assert metrics["standard"]["approved_percent"] is None  # nothing decided: n/a, not 0
    database.close()


def test_the_metrics_on_postgresql(postgres_url: str) -> None:  # noqa: F811
    _period(postgres_url)  # the shared cluster: 2001 is this test's own period
    database = Database.open(postgres_url)
    try:
        _expected(pa_metrics(database.engine, dt.date(2001, 1, 1), dt.date(2001, 12, 31)))
    finally:
        database.close()


def test_the_command_line_refuses_a_reversed_period_and_an_unmigrated_database(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    assert main(["report", "pa-metrics", "--database", url, "--from", "2001-02-01", "--to", "2001-01-01"]) == 2
    assert "before --from" in capsys.readouterr().err
    assert main(["report", "pa-metrics", "--database", url, "--from", "2001-01-01", "--to", "2001-12-31"]) == 1
    assert "schema revision None" in capsys.readouterr().err
    assert main(["report", "pa-metrics", "--database", "mysql://x/y", "--from", "2001-01-01", "--to", "2001-01-02"]) == 2
