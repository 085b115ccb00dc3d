"""The front-office lookup page: its static files and the payer and plan choices it offers.

``place-of-service.json`` is the CMS Place of Service code set; the file names its source."""
from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse

from service.responses import json_response

STATIC = Path(__file__).resolve().parent / "static"
#: Everything the page loads comes from this service: no other origin, no inline code.
CONTENT_SECURITY_POLICY = ("default-src 'self'; base-uri 'none'; form-action 'self'; "
                           "frame-ancestors 'none'; object-src 'none'")
_ASSETS = {"lookup.js": "text/javascript", "lookup.css": "text/css", "favicon.svg": "image/svg+xml",
           "place-of-service.json": "application/json"}

router = APIRouter(tags=["lookup"])


@router.get("/lookup", include_in_schema=False)
def page() -> FileResponse:
    """The lookup page (plain HTML; it calls ``/lookup/payers`` and ``POST /v1/requirements``)."""
    return FileResponse(STATIC / "lookup.html", media_type="text/html; charset=utf-8",
                        headers={"Content-Security-Policy": CONTENT_SECURITY_POLICY})


@router.get("/lookup/payers", summary="Payers of the loaded rule set with their plans, by title")
def payers(request: Request) -> JSONResponse:
    """``{"ruleset", "payers": [{"id", "title", "plans": [{"id", "title"}]}]}`` for the page's choices,
    payers by title, each with the plans a request may name (``RuleSet.plans``), by title."""
    ruleset = request.app.state.holder.current
    choices = []
    for payer in ruleset.payers():
        named = sorted(({"id": plan, "title": ruleset.plan_title(payer, plan)} for plan in ruleset.plans(payer)),
                       key=lambda p: (p["title"].casefold(), p["id"]))
        choices.append({"id": payer, "title": ruleset.payer_title(payer), "plans": named})
    choices.sort(key=lambda p: (p["title"].casefold(), p["id"]))
    return json_response({"ruleset": ruleset.digest, "payers": choices}, ruleset.digest)


@router.get("/favicon.ico", include_in_schema=False)
def favicon() -> RedirectResponse:
    """Browsers ask every site for ``/favicon.ico``: the page's icon."""
    return RedirectResponse("/lookup/favicon.svg", status_code=308)


@router.get("/lookup/{name}", include_in_schema=False)
def asset(name: str) -> FileResponse:
    """The page's script and style sheet; nothing else is served from the folder."""
    if name not in _ASSETS:
        raise HTTPException(404, f"no lookup asset named {name!r}")
    return FileResponse(STATIC / name, media_type=f"{_ASSETS[name]}; charset=utf-8")
