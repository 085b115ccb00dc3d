"""Closing the loop: the authorizations covreq certified answer later v1 and CRD questions.

Before the engine decides a v1 request or a CRD order, the service adds to its ``authorizations``
those on file (service/pas/store.py) for the same payer, member and codes; the engine then answers
``satisfied`` with the authorization's number when one covers the date of service, exactly as for
an authorization the caller passes in (docs/authoring.md). The member is the v1 ``patient.id``, or
the CRD Coverage's member id (its ``subscriberId``, as PAS reads it). ``engine/`` never sees the
database. A store that cannot be read is logged and the question answered without it: an answer
that asks for an authorization already granted is safe, a failed call is not.
"""
from __future__ import annotations

import logging
from typing import Any

from service.pas.store import PasStore
from service.store.replay import StoreUnavailable

log = logging.getLogger("covreq.pas")


def member_of_v1(body: Any) -> str | None:
    """The member id a v1 request names: its ``patient.id`` (a string or a whole number)."""
    patient = body.get("patient") if isinstance(body, dict) else None
    found = patient.get("id") if isinstance(patient, dict) else None
    if isinstance(found, bool) or not isinstance(found, (str, int)) or not str(found).strip():
        return None
    return str(found)


def with_on_file(store: PasStore, body: dict[str, Any], member: str | None) -> dict[str, Any]:
    """``body`` (a v1 request) with the authorizations on file for its payer, ``member`` and codes
    added after the caller's own; ``body`` itself when there are none or nothing to look them up by."""
    payer, services = body.get("payer"), body.get("services")
    if member is None or not isinstance(payer, str) or not isinstance(services, list):
        return body
    codes = {str(s["code"]).strip().upper() for s in services
             if isinstance(s, dict) and isinstance(s.get("code"), (str, int)) and not isinstance(s.get("code"), bool)}
    if not codes:
        return body
    try:
        found = store.on_file(payer, member, codes)
    except StoreUnavailable:
        log.warning("authorizations on file not read: the PAS store is unavailable",
                    extra={"event": "pas-on-file-unavailable"})
        return body
    if not found:
        return body
    given = body.get("authorizations") if isinstance(body.get("authorizations"), list) else []
    return {**body, "authorizations": [*given, *({"id": a.number, "code": a.code, "start": a.valid_from.isoformat(),
                                                  "end": a.valid_to.isoformat()} for a in found)]}
