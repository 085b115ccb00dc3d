"""The audit trail: one JSON line per call of a decision endpoint, appended to a file.

A record says who asked (the authenticated caller), which call it was (``hookInstance`` or
request id), which codes were asked about, what was answered, by which rule set and under which
coverage-assertion ids. It holds no patient identifiers: no patient id, birth date, diagnosis,
date of service, request body or error message (messages may quote what was sent).

A record's size is bounded: the first :data:`MAX_DECISIONS` decisions of a call are written in
full; past them the record also says how many there were, how many got each answer, and the
SHA-256 of the decisions left out (in the same form), which the answer itself can be checked
against.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import threading
import uuid
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

import orjson
from fastapi import Request

from service.auth import ANONYMOUS, Caller

if TYPE_CHECKING:
    from service.decision_log import DecisionLog

log = logging.getLogger("covreq.audit")
#: Header a caller may send to name its request in the audit trail.
REQUEST_ID_HEADER = "x-request-id"
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
#: Longest caller-chosen text (hookInstance, order reference, code) kept in a record.
MAX_FIELD = 128
#: Decisions written in full in one record; the rest are counted and digested.
MAX_DECISIONS = 50


def request_id(request: Request) -> str:
    """The caller's ``X-Request-Id`` when it is a plain token of at most 128 characters, else a new id."""
    offered = request.headers.get(REQUEST_ID_HEADER, "")
    return offered if _REQUEST_ID.match(offered) else uuid.uuid4().hex


def caller_of(request: Request) -> Caller:
    """The caller authenticated for this request (anonymous when authentication is off)."""
    return getattr(request.state, "caller", ANONYMOUS)


class AuditLog:
    """Appends records to a JSON Lines file; each record is one ``write`` on an ``O_APPEND`` file,
    so lines from several threads or worker processes never interleave, and the file is opened per
    record so that it can be rotated by moving it away."""

    def __init__(self, path: Path, strict: bool = False, sink: "DecisionLog | None" = None) -> None:
        self.path, self.strict = path, strict
        #: The decision-log sink each record also goes to, as written (service/decision_log.py).
        self.sink = sink
        self.failures = 0
        #: Whether the last record could not be written (shown by ``/readyz``).
        self.failing = False
        self._lock = threading.Lock()

    def check(self) -> None:
        """Raise ValueError when the file cannot be opened for appending (the service does not start)."""
        try:
            os.close(self._open())
        except OSError as exc:
            raise ValueError(f"the audit file {self.path} cannot be written: {exc.strerror or exc}") from None

    def _open(self) -> int:
        """The audit file opened for appending (created owner-only), as both the check and writes open it."""
        return os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    def write(self, record: dict[str, Any]) -> bool:
        """Append one record, stamped with the current UTC time and a unique ``id``; False when it could
        not be written. The same line goes to the decision-log sink for every answer given (written, or
        not written without strict audit)."""
        line = _line({"ts": datetime.now(timezone.utc).isoformat(timespec="milliseconds"), "id": uuid.uuid4().hex,
                      **record})
        written = self._append(line)
        if self.sink is not None and (written or not self.strict):
            self.sink.offer(line)
        return written

    def _append(self, line: bytes) -> bool:
        """Append one line to the file; False when it could not be written."""
        with self._lock:
            try:
                fd = self._open()
                try:
                    os.write(fd, line)
                finally:
                    os.close(fd)
            except OSError as exc:  # the operator is told loudly; strict, the answer is withheld
                self.failures += 1
                self.failing = True
                log.error("audit record not written", extra={"event": "audit_write_failed", "path": str(self.path),
                                                             "error": exc.strerror or type(exc).__name__,
                                                             "failures": self.failures, "strict": self.strict})
                return False
            self.failing = False
            return True

    def withheld(self, written: bool) -> bool:
        """Whether an answer must be withheld (503) because its record was not written under strict audit."""
        return self.strict and not written

    def v1(self, request: Request, digest: str, status: int, answer: dict[str, Any] | None = None,
           location: str = "") -> bool:
        """Record a ``POST /v1/requirements`` call: the decisions, or the refusal's status and field.
        False when the record could not be written."""
        record: dict[str, Any] = {"api": "v1", "caller": caller_of(request).as_dict(),
                                  "request_id": request_id(request), "ruleset": digest, "status": status}
        if answer is not None:
            _add_decisions(record, [_decision(d) for d in answer["decisions"]])
        else:
            record["error_location"] = location[:MAX_FIELD]
        return self.write(record)

    def cds(self, request: Request, digest: str, status: int, hook: str | None = None,
            hook_instance: str | None = None, answers: Iterable[Any] = (), expression: str = "") -> bool:
        """Record a CDS Hooks call: each coverage assertion, or the refusal's status and place.
        False when the record could not be written."""
        record: dict[str, Any] = {"api": "cds-hooks", "caller": caller_of(request).as_dict(),
                                  "service": request.url.path.rsplit("/", 1)[-1], "hook": hook,
                                  "hookInstance": hook_instance and hook_instance[:MAX_FIELD], "request_id": request_id(request),
                                  "ruleset": digest, "status": status}
        if status == 200:
            _add_decisions(record, [_assertion(a) for a in answers])
        else:
            record["error_location"] = expression[:MAX_FIELD]
        return self.write(record)

    def dtr(self, request: Request, digest: str, status: int, operation: str,
            decisions: Iterable[dict[str, Any]] = (), expression: str = "") -> bool:
        """Record a DTR operation (``questionnaire-package``, ``next-question``): the decisions it
        made, or the refusal's status and place. False when the record could not be written."""
        record: dict[str, Any] = {"api": "dtr", "caller": caller_of(request).as_dict(), "operation": operation,
                                  "request_id": request_id(request), "ruleset": digest, "status": status}
        if status == 200:
            _add_decisions(record, [_decision(d) for d in decisions])
        else:
            record["error_location"] = expression[:MAX_FIELD]
        return self.write(record)


    def pas(self, request: Request, digest: str, status: int, operation: str, request_id_: str | None = None,
            items: Iterable[Any] = (), replayed: bool = False, expression: str = "") -> bool:
        """Record a PAS operation (``submit``, ``inquire``): the stored request's id and each item's code
        and decision (status, X12 review action, authorization number), or the refusal's status and
        place. False when the record could not be written."""
        record: dict[str, Any] = {"api": "pas", "caller": caller_of(request).as_dict(), "operation": operation,
                                  "request_id": request_id(request), "ruleset": digest, "status": status}
        if status == 200:
            record.update({"pa_request": request_id_, "replayed": replayed})
            _add_decisions(record, [{"code": _cut(i.item.code), "system": i.item.system, "pa_needed": i.status,
                                     "review_action": i.review_action, "authorization": i.authorization}
                                    for i in items])
        else:
            record["error_location"] = expression[:MAX_FIELD]
        return self.write(record)


def _add_decisions(record: dict[str, Any], decisions: list[dict[str, Any]]) -> None:
    """The first MAX_DECISIONS ``decisions``; past them, their total, the count of each
    ``pa_needed`` answer and the SHA-256 of the compact JSON of the ones left out."""
    record["decisions"] = decisions[:MAX_DECISIONS]
    if len(decisions) > MAX_DECISIONS:
        record["decisions_total"] = len(decisions)
        record["answers"] = dict(Counter(str(d["pa_needed"]) for d in decisions))
        record["omitted_sha256"] = hashlib.sha256(_line(decisions[MAX_DECISIONS:])[:-1]).hexdigest()


def _decision(decision: dict[str, Any]) -> dict[str, Any]:
    return {k: _cut(decision[k]) for k in ("code", "system", "pa_needed", "covered")}


def _cut(value: Any) -> Any:
    return value[:MAX_FIELD] if isinstance(value, str) else value


def _line(record: Any) -> bytes:
    """One JSON line, written by orjson; text orjson refuses (a lone surrogate) by the standard library."""
    try:
        return orjson.dumps(record, default=str, option=orjson.OPT_APPEND_NEWLINE)
    except orjson.JSONEncodeError:
        return (json.dumps(record, separators=(",", ":"), default=str) + "\n").encode()


def _assertion(answered: Any) -> dict[str, Any]:
    assertion = answered.assertion
    line = assertion.line
    return {"order": answered.order.reference[:MAX_FIELD], "code": _cut(line.code) if line else None,
            "system": _cut(line.system) if line else None, "pa_needed": assertion.pa_needed,
            "covered": assertion.covered, "coverage_assertion_id": answered.assertion_id}
