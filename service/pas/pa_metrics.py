"""The prior-authorization metrics CMS-0057-F requires payers to publish, from the stored decisions.

The rule's list (42 CFR 422.122(c) for MA organizations; the same list at 431.80(b), 438.210(f),
457.732(b), 457.1230(d) and 45 CFR 156.223(b)): (2) the percentage of standard requests approved,
(3) denied, (4) approved after appeal, (5) the percentage of requests whose review timeframe was
extended and that were approved, (6) the percentage of expedited requests approved, (7) denied,
(8) the average and median time from the request to the decision for standard requests, (9) the
same for expedited ones; (1), the list of items and services, is ``covreq report pa-list``.

A request counts when it was received in the period, needed prior authorization for at least one
item, and is decided (no item pended). It is **denied** when a reviewer denied one of its items
(whatever an appeal did after), **approved** otherwise (certified, in total or with changes);
**approved after appeal** when an item's denial was overturned on appeal and no item stays denied.
The time to decision runs from receipt to the decision of its last pended item.

Everything is computed by the database in one statement: the requests grouped once (a common table
expression), their aggregates by priority, and the median by ``row_number()`` over them ordered by
time; no row is loaded into Python.
"""
from __future__ import annotations

import csv
import datetime as dt
import io
import json
from typing import Any

from sqlalchemy import Engine, Float, and_, case, cast, func, literal_column, select

from service.pas.clock import EXPEDITED, STANDARD
from service.pas.decide import NOT_REQUIRED, PENDED
from service.pas.review import APPROVED, DENIED, MODIFIED
from service.store.models import pa_item, pa_request

FORMATS = ("text", "json", "csv")
RULE = "CMS-0057-F, 42 CFR 422.122(c) (also 431.80(b), 438.210(f), 457.732(b), 457.1230(d), 45 CFR 156.223(b))"


def _seconds(engine: Engine) -> Any:
    """Seconds from receipt to decision, in the engine's SQL."""
    if engine.dialect.name == "postgresql":
        return func.extract("epoch", pa_request.c.decided_at - pa_request.c.received_at)
    return (func.julianday(pa_request.c.decided_at) - func.julianday(pa_request.c.received_at)) * literal_column("86400.0")


def _flag(condition: Any) -> Any:
    return func.max(case((condition, 1), else_=0))


def _per_request(engine: Engine, start: dt.date, end: dt.date) -> Any:
    """One row per request received from ``start`` to ``end`` (inclusive) that needed prior authorization."""
    return (select(pa_request.c.id, pa_request.c.priority, pa_request.c.status,
                   (pa_request.c.extended_at.isnot(None)).label("extended"), _seconds(engine).label("seconds"),
                   _flag(pa_item.c.status != NOT_REQUIRED).label("needs"),
                   _flag(pa_item.c.appeal_outcome.isnot(None) | (pa_item.c.status == DENIED)).label("denied"),
                   _flag(pa_item.c.status == DENIED).label("still_denied"),
                   _flag(pa_item.c.appeal_outcome == APPROVED).label("overturned"),
                   _flag(pa_item.c.status == MODIFIED).label("modified"))
            .select_from(pa_request.join(pa_item, pa_item.c.request_id == pa_request.c.id))
            .where(pa_request.c.received_at >= dt.datetime.combine(start, dt.time(), dt.timezone.utc),
                   pa_request.c.received_at < dt.datetime.combine(end + dt.timedelta(days=1), dt.time(),
                                                                  dt.timezone.utc))
            .group_by(pa_request.c.id, pa_request.c.priority, pa_request.c.status, pa_request.c.extended_at,
                      pa_request.c.received_at, pa_request.c.decided_at)
            .cte("per_request"))


def _sum(condition: Any) -> Any:
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


def _medians(rows: Any, decided: Any) -> Any:
    """The median seconds to decision of each priority: the middle decided request (or the mean of the
    middle two) by ``row_number`` over the requests of the priority ordered by their time."""
    ranked = select(rows.c.priority, rows.c.seconds,
                    func.row_number().over(partition_by=rows.c.priority, order_by=rows.c.seconds).label("n"),
                    func.count().over(partition_by=rows.c.priority).label("total")
                    ).where(rows.c.needs == 1, decided).subquery()
    return (select(ranked.c.priority, func.avg(cast(ranked.c.seconds, Float)).label("median"))
            .where(ranked.c.n.between((ranked.c.total + 1) // 2, (ranked.c.total + 2) // 2))
            .group_by(ranked.c.priority).subquery())


def pa_metrics(engine: Engine, start: dt.date, end: dt.date) -> dict[str, Any]:
    """The metrics of the requests received from ``start`` to ``end`` (inclusive), by priority."""
    if end < start:
        raise ValueError(f"the period ends ({end}) before it starts ({start})")
    rows = _per_request(engine, start, end)
    decided, approved = and_(rows.c.status != PENDED), and_(rows.c.status != PENDED, rows.c.denied == 0)
    query = select(rows.c.priority, _sum(decided).label("decided"), _sum(rows.c.status == PENDED).label("pending"),
                   _sum(approved).label("approved"), _sum(and_(decided, rows.c.denied == 1)).label("denied"),
                   _sum(and_(approved, rows.c.modified == 1)).label("modified"),
                   _sum(and_(decided, rows.c.overturned == 1, rows.c.still_denied == 0)).label("after_appeal"),
                   _sum(and_(approved, rows.c.extended)).label("extended_approved"),
                   func.avg(case((decided, cast(rows.c.seconds, Float)))).label("average")
                   ).where(rows.c.needs == 1).group_by(rows.c.priority)
    medians = _medians(rows, decided)
    query = query.subquery()
    joined = select(query, medians.c.median).select_from(
        query.outerjoin(medians, medians.c.priority == query.c.priority))
    result: dict[str, Any] = {"rule": RULE, "from": start.isoformat(), "to": end.isoformat()}
    with engine.connect() as connection:
        found = {r.priority: r for r in connection.execute(joined)}
    for priority in (STANDARD, EXPEDITED):
        row = found.get(priority)
        result[priority] = _figures(row, int(row.decided) if row else 0,
                                    float(row.median) if row and row.median is not None else None)
    both = result[STANDARD]["decided"] + result[EXPEDITED]["decided"]
    extended = result[STANDARD]["extended_approved"] + result[EXPEDITED]["extended_approved"]
    result["extended_approved_percent"] = _percent(extended, both)
    return result


def _percent(part: int, whole: int) -> float | None:
    return round(100.0 * part / whole, 2) if whole else None


def _hours(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds / 3600.0, 2)


def _figures(row: Any, decided: int, median: float | None) -> dict[str, Any]:
    counts = {name: int(getattr(row, name)) if row else 0 for name in
              ("pending", "approved", "denied", "modified", "after_appeal", "extended_approved")}
    return {"decided": decided, **counts,
            "approved_percent": _percent(counts["approved"], decided),
            "denied_percent": _percent(counts["denied"], decided),
            "approved_after_appeal_percent": _percent(counts["after_appeal"], decided),
            "average_hours": _hours(float(row.average) if row and row.average is not None else None),
            "median_hours": _hours(median)}


#: (label, priority or None for the whole, key) of each published figure, in the rule's order.
LINES = (("(c)(2) standard requests approved, %", STANDARD, "approved_percent"),
         ("(c)(3) standard requests denied, %", STANDARD, "denied_percent"),
         ("(c)(4) standard requests approved after appeal, %", STANDARD, "approved_after_appeal_percent"),
         ("(c)(5) requests with an extended review timeframe, approved, %", None, "extended_approved_percent"),
         ("(c)(6) expedited requests approved, %", EXPEDITED, "approved_percent"),
         ("(c)(7) expedited requests denied, %", EXPEDITED, "denied_percent"),
         ("(c)(8) standard requests: average hours to decision", STANDARD, "average_hours"),
         ("(c)(8) standard requests: median hours to decision", STANDARD, "median_hours"),
         ("(c)(9) expedited requests: average hours to decision", EXPEDITED, "average_hours"),
         ("(c)(9) expedited requests: median hours to decision", EXPEDITED, "median_hours"),
         ("standard requests decided", STANDARD, "decided"), ("expedited requests decided", EXPEDITED, "decided"),
         ("standard requests still pended", STANDARD, "pending"),
         ("expedited requests still pended", EXPEDITED, "pending"))


def _value(metrics: dict[str, Any], priority: str | None, key: str) -> Any:
    return metrics[key] if priority is None else metrics[priority][key]


def render(metrics: dict[str, Any], fmt: str) -> str:
    """The metrics as ``text`` (a table), ``json`` or ``csv`` (metric, value); n/a where nothing was decided."""
    if fmt == "json":
        return json.dumps(metrics, indent=2) + "\n"
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["metric", "value", "from", "to"])
        for label, priority, key in LINES:
            value = _value(metrics, priority, key)
            writer.writerow([label, "" if value is None else value, metrics["from"], metrics["to"]])
        return out.getvalue()
    width = max(len(label) for label, _, _ in LINES)
    lines = [f"Prior authorization metrics, requests received {metrics['from']} to {metrics['to']}",
             f"({metrics['rule']})", ""]
    for label, priority, key in LINES:
        value = _value(metrics, priority, key)
        lines.append(f"{label:<{width}}  {'n/a' if value is None else value}")
    return "\n".join(lines) + "\n"
