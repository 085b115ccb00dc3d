"""``GET /pa-list/{payer}``: the published list of items and services that need prior authorization
(CMS-0057-F), read-only and public, for a payer's website.

The list is made by :func:`engine.publishing.palist.pa_list` from the loaded rule set; each rendering is kept
per rule-set digest (a reload makes new ones), and carries an ``ETag`` so that caches and browsers
ask again cheaply. HTML pages load nothing but the lookup page's style sheet.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import threading
from collections import OrderedDict

from fastapi import APIRouter, HTTPException, Path, Query, Request
from fastapi.responses import Response

from engine.evaluation.clock import current_day
from engine.publishing.palist import PaListError, pa_list
from engine.publishing.palist_output import MEDIA_TYPES, PA_LIST_FORMATS, render_pa_list
from service.lookup import CONTENT_SECURITY_POLICY
from service.responses import RULESET_HEADER

#: Renderings kept (payer, plan, date and format under one rule set each).
CACHE_ENTRIES = 128
#: How long a browser or proxy may reuse a list without asking again.
MAX_AGE_SECONDS = 300
STYLESHEET = "/lookup/lookup.css"

router = APIRouter(tags=["lookup"])


class _Renderings:
    """A bounded, thread-safe LRU of rendered lists by (digest, payer, plan, date, format)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._kept: OrderedDict[tuple[str, ...], tuple[str, str]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[str, ...]) -> tuple[str, str] | None:
        with self._lock:
            found = self._kept.get(key)
            if found is not None:
                self._kept.move_to_end(key)
            return found

    def put(self, key: tuple[str, ...], value: tuple[str, str]) -> None:
        with self._lock:
            self._kept[key] = value
            self._kept.move_to_end(key)
            while len(self._kept) > self.size:
                self._kept.popitem(last=False)


renderings = _Renderings(CACHE_ENTRIES)


def _day(text: str | None) -> dt.date:
    if text is None:
        return current_day()
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise HTTPException(400, f"date: '{text[:40]}' is not a date (YYYY-MM-DD)") from None


@router.get("/pa-list/{payer}", summary="The items and services that need prior authorization on a date")
def published_list(request: Request, payer: str = Path(max_length=100),
                   plan: str | None = Query(None, max_length=100, description="a plan id of the payer"),
                   date: str | None = Query(None, max_length=40, description="YYYY-MM-DD; default today"),
                   format: str = Query("json", description="json, csv or html")) -> Response:  # noqa: A002
    """The list as JSON (the shape of ``covreq report pa-list --format json``), CSV or an HTML page;
    404 for a payer the rules do not know, 400 for a bad plan, date or format."""
    if format not in PA_LIST_FORMATS:
        raise HTTPException(400, f"format: '{format[:20]}' is not one of {', '.join(PA_LIST_FORMATS)}")
    day = _day(date)
    ruleset = request.app.state.holder.current
    key = (ruleset.digest, payer, plan or "", day.isoformat(), format)
    kept = renderings.get(key)
    if kept is None:
        try:
            listing = pa_list(ruleset, payer, day, plan)
        except PaListError as exc:
            raise HTTPException(404 if payer not in ruleset.payers() else 400, str(exc)) from None
        text = render_pa_list(listing, format, STYLESHEET)
        kept = (text, '"' + hashlib.sha256("\0".join(key).encode()).hexdigest()[:32] + '"')
        renderings.put(key, kept)
    text, etag = kept
    headers = {RULESET_HEADER: ruleset.digest, "ETag": etag, "Cache-Control": f"public, max-age={MAX_AGE_SECONDS}",
               "Content-Security-Policy": CONTENT_SECURITY_POLICY, "X-Content-Type-Options": "nosniff"}
    if etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    return Response(text, media_type=MEDIA_TYPES[format], headers=headers)
