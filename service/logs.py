"""Structured logging: one JSON object per line, built from the record and its ``extra`` fields.

Plain text (``configure(json_logs=False)``) is one line a record too, control characters escaped.
Callers log only operational facts (paths, status codes, rule-set digests, hook instance and
coverage-assertion ids, problem locations), never resource content or patient identifiers.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from datetime import datetime, timezone
from typing import Callable, Final

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}
#: Longest caller-chosen text (a hookInstance, an order reference) written to a log line.
MAX_CALLER_TEXT = 128
#: Identical warnings or errors written per window; more are counted, not written.
REPEAT_LIMIT = 10
#: The window of :data:`REPEAT_LIMIT`, in seconds.
REPEAT_WINDOW = 60.0
_REPEAT_KEYS = 10_000  # distinct lines tracked at once; past it the counts start again
#: ``json.dumps(entry, default=str)`` without building an encoder per line (the same text).
_encode = json.JSONEncoder(default=str).encode


#: The plain-text format: one line a record, its traceback (if any) on indented lines below.
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
#: What :func:`escape_controls` writes for each character a terminal or a log reader would act on:
#: C0 and C1 controls and DEL (``\x1b`` starts an ANSI escape, ``\n`` a forged line), the Unicode
#: line and paragraph separators, and the backslash itself (so an escape in the log is never ambiguous).
_ESCAPES: Final = {**{c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7F, 0xA0))},
                   0x2028: "\\u2028", 0x2029: "\\u2029", ord("\\"): "\\\\"}


def caller_text(value: str) -> str:
    """A caller-chosen string cut to ``MAX_CALLER_TEXT`` characters for logging."""
    return value[:MAX_CALLER_TEXT]


def escape_controls(text: str) -> str:
    """``text`` with control characters, line separators and backslashes written as escapes."""
    return text.translate(_ESCAPES)


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
        return _encode(entry)


class TextFormatter(logging.Formatter):
    """Plain text (``COVREQ_JSON_LOGS=0``): ``time level logger message`` on one line, control
    characters escaped, so caller text in a message (a path with ``%0a`` or ``%1b``) cannot forge a
    line or reach the terminal as an escape sequence; a traceback follows on lines that each start
    with spaces, so no line of it can pass for a record."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        record.message = escape_controls(record.getMessage())
        if self.usesTime():
            record.asctime = self.formatTime(record, self.datefmt)
        text = self.formatMessage(record)
        details = [self.formatException(record.exc_info)] if record.exc_info else []
        if record.stack_info:
            details.append(self.formatStack(record.stack_info))
        return text + "".join(f"\n    {escape_controls(line)}" for block in details for line in block.splitlines())


class RepeatFilter(logging.Filter):
    """Lets through at most ``limit`` identical warnings or errors (same logger, level and text) per
    ``window`` seconds: a flood (accept errors when descriptors run out, one refusal sent a million
    times) costs a few lines, not the disk. The first line past the limit says so; the first line
    of the next window carries the count of lines dropped (``suppressed``)."""

    def __init__(self, limit: int = REPEAT_LIMIT, window: float = REPEAT_WINDOW,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.limit, self.window, self._clock = limit, window, clock
        self._seen: dict[tuple[str, int, str], list[float]] = {}  # key -> [window start, lines seen]
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        """Whether ``record`` is written (records below WARNING always are)."""
        if record.levelno < logging.WARNING:
            return True
        key, now = (record.name, record.levelno, record.getMessage()), self._clock()
        with self._lock:
            seen = self._seen.get(key)
            if seen is None or now - seen[0] >= self.window:
                if len(self._seen) >= _REPEAT_KEYS:
                    self._seen.clear()
                self._seen[key] = [now, 1]
                if seen is not None and seen[1] > self.limit + 1:
                    record.suppressed = int(seen[1] - self.limit - 1)
                return True
            seen[1] += 1
            if seen[1] == self.limit + 1:
                record.repeats = f"more lines like this one in the next {self.window:g} seconds are dropped"
            return seen[1] <= self.limit + 1


def configure(json_logs: bool = True, level: int | str = logging.INFO) -> None:
    """Send the ``covreq`` loggers (at ``level``) and every other logger's warnings and errors
    (uvicorn's, asyncio's: unhandled exceptions and accept errors) to stderr, as JSON lines or
    plain text, with floods of repeated warnings cut short (:class:`RepeatFilter`)."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if json_logs else TextFormatter())
    handler.addFilter(RepeatFilter())
    ours = logging.getLogger("covreq")
    ours.handlers[:] = [handler]
    ours.setLevel(level)
    ours.propagate = False
    everyone = logging.getLogger()
    everyone.handlers[:] = [handler]
    everyone.setLevel(logging.WARNING)
    threading.excepthook = log_thread_exception


def log_thread_exception(args: threading.ExceptHookArgs) -> None:
    """Log an exception that ended a thread (the bundle poller, a worker's helper) as one record of
    the configured format, instead of the interpreter's plain-text traceback on stderr."""
    if args.exc_type is SystemExit:
        return
    name = args.thread.name if args.thread is not None else "?"
    logging.getLogger("covreq.thread").error(
        "thread %s ended by an exception", name, exc_info=(args.exc_type, args.exc_value, args.exc_traceback),
        extra={"event": "thread-crashed", "thread_name": name})
