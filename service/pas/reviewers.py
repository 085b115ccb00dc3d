"""Who may decide pended PAS requests: the payer's reviewers, each with a key in a key file.

``COVREQ_REVIEWER_KEYS`` names a YAML file ``name: sha256:<64 hex digits>`` (the line ``covreq
hash-key NAME`` prints; service/api_keys.py), one entry per reviewer; a reviewer sends
``Authorization: Bearer <key>``, and every decision is recorded under the key's name. With the
setting unset the reviewers' API is refused (403): it is never open by default. Keys are compared
with every entry, each in constant time.
"""
from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Mapping

from fastapi import Request

from service import api_keys
from service.auth import load_api_keys
from service.settings import Settings

SETTING = "COVREQ_REVIEWER_KEYS"
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="covreq-reviewers"'}


class ReviewerRefused(Exception):
    """No reviewer: 403 while no key file is configured, 401 for a missing or wrong key."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


@dataclass(frozen=True)
class Reviewers:
    """The reviewers' key hashes by name (empty: the API is off)."""

    keys: Mapping[str, bytes]

    @classmethod
    def from_settings(cls, settings: Settings) -> "Reviewers":
        """The reviewers of ``settings.reviewer_keys``; raises ``AuthConfigError`` for an unusable file."""
        return cls(load_api_keys(settings.reviewer_keys) if settings.reviewer_keys else {})

    def who(self, request: Request) -> str:
        """The name of the reviewer whose key ``request`` sends; raises :class:`ReviewerRefused`."""
        if not self.keys:
            raise ReviewerRefused(403, f"the reviewers' API is off until {SETTING} names the reviewers' key file")
        scheme, _, key = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise ReviewerRefused(401, f"send Authorization: Bearer <your reviewer key> (a key of {SETTING})")
        offered, found = api_keys.digest(key.strip()), None
        for name, digest in self.keys.items():
            if hmac.compare_digest(offered, digest):
                found = name
        if found is None:
            raise ReviewerRefused(401, "the reviewer key is not valid")
        return found
