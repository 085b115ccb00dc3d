"""The published prior-authorization list written as JSON, CSV or a plain HTML page.

The HTML page carries no script and no inline style, so it is served under a strict content
security policy; every value is escaped.
"""
from __future__ import annotations

import csv
import html
import io
import json

from engine.publishing.palist import ALWAYS, PaList

PA_LIST_FORMATS = ("json", "csv", "html")
MEDIA_TYPES = {"json": "application/json", "csv": "text/csv; charset=utf-8", "html": "text/html; charset=utf-8"}
CSV_COLUMNS = ("code", "system", "requirement", "condition", "settings", "policy_id", "policy_title",
               "policy_version", "plans", "effective", "end", "policy_url")


def _rows(listing: PaList) -> list[dict[str, str]]:
    return [{"code": item.code, "system": item.system, "requirement": item.requirement,
             "condition": item.condition(), "settings": item.settings_text(), "policy_id": item.policy.id,
             "policy_title": item.policy.title, "policy_version": item.policy.version,
             "plans": " ".join(sorted(item.policy.plans or ())), "effective": item.effective.isoformat(),
             "end": item.end.isoformat() if item.end else "", "policy_url": item.policy.url}
            for item in listing.items]


def _cell(text: str) -> str:
    """A CSV cell a spreadsheet will not run as a formula (rule files are not trusted)."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _title(listing: PaList) -> str:
    plan = f", {listing.plan_title}" if listing.plan_title else ""
    return f"Items and services that need prior authorization: {listing.payer_title}{plan}, {listing.day.isoformat()}"


def _html(listing: PaList, stylesheet: str | None) -> str:
    e = html.escape
    head = f'<link rel="stylesheet" href="{e(stylesheet)}">' if stylesheet else ""
    scope = ("" if listing.scope == "complete" else
             "<p>This list covers the prior-authorization programs whose rules covreq holds for this payer; "
             "it may not be the payer's whole list.</p>")
    rows = []
    for item, row in zip(listing.items, _rows(listing)):
        link = f'<a href="{e(item.policy.url)}">{e(item.policy.title)}</a>' if item.policy.url else e(item.policy.title)
        needed = "always" if item.requirement == ALWAYS else e(row["condition"])
        dates = e(row["effective"]) + (f" to {e(row['end'])}" if row["end"] else "")
        rows.append(f"<tr><td>{e(item.code)}</td><td>{e(item.system)}</td><td>{link}</td>"
                    f"<td>{e(row['settings'])}</td><td>{needed}</td><td>{dates}</td></tr>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{e(_title(listing))}</title>{head}</head><body>\n<h1>{e(_title(listing))}</h1>\n{scope}"
            f"<p>{len(listing.items)} entries; rule set {e(listing.ruleset)}.</p>\n"
            "<table><thead><tr><th>Code</th><th>System</th><th>Program (policy)</th><th>Settings</th>"
            "<th>Prior authorization needed</th><th>Effective</th></tr></thead><tbody>\n"
            + "\n".join(rows) + "\n</tbody></table>\n</body></html>\n")


def render_pa_list(listing: PaList, fmt: str, stylesheet: str | None = None) -> str:
    """The list as text in ``fmt`` (one of :data:`PA_LIST_FORMATS`); an HTML page links ``stylesheet``."""
    if fmt == "json":
        return json.dumps(listing.as_dict(), indent=2) + "\n"
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, CSV_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: _cell(v) for k, v in row.items()} for row in _rows(listing))
        return out.getvalue()
    if fmt == "html":
        return _html(listing, stylesheet)
    raise ValueError(f"unknown format {fmt!r}; use one of {', '.join(PA_LIST_FORMATS)}")
