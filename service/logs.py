"""Structured logging: one JSON object per line, built from the record and its ``extra`` fields.

Callers log only operational facts (paths, status codes, rule-set digests, hook instance and
coverage-assertion ids, problem locations), never resource content or patient identifiers.
"""
from __future__ import annotations

import json
import logging
from datetime import datetime, timezone

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}
#: Longest caller-chosen text (a hookInstance, an order reference) written to a log line.
MAX_CALLER_TEXT = 128


def caller_text(value: str) -> str:
    """A caller-chosen string cut to ``MAX_CALLER_TEXT`` characters for logging."""
    return value[:MAX_CALLER_TEXT]


class JsonFormatter(logging.Formatter):
    """Formats a record as ``{"ts", "level", "logger", "message", ...extra}``."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure(json_logs: bool = True, level: int | str = logging.INFO) -> None:
    """Send the ``covreq`` loggers to stderr, as JSON lines or plain text."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if json_logs
                         else logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger("covreq")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
