"""Decision-log shipping: the audit records, as written to the audit file, POSTed in batches to an
HTTP sink (``COVREQ_DECISION_LOG_URL``), as OPA ships its decision logs.

Format: each POST's body is gzip-compressed JSON Lines (``Content-Type: application/x-ndjson``,
``Content-Encoding: gzip``), the records' exact lines from the file, oldest first; each record has
an ``id`` for the sink to drop duplicates. Delivery is at least once: a batch whose answer was lost
is sent again. A 2xx answer delivers the batch; anything else (another status, a refused
connection, a timeout) is retried after an exponential backoff with full jitter, the same batch
first, so records arrive in order per process.

The buffer is bounded by records and bytes; when a record does not fit, the oldest are dropped,
counted (``covreq_decision_log_dropped_total{reason="overflow"}``) and logged. The audit file stays
the record of truth: the sink never holds up or refuses an answer (strict audit is about the file).
A background thread does the sending; a request only appends to the buffer. At shutdown the thread
has ``shutdown_seconds`` to deliver what is left; the rest is counted as ``reason="shutdown"``.
"""
from __future__ import annotations

import gzip
import logging
import random
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import httpx
from prometheus_client import CollectorRegistry, Counter

from service.settings import Settings

log = logging.getLogger("covreq.decision_log")
#: Most records one POST carries.
BATCH_RECORDS = 500
#: Most bytes (uncompressed) one POST carries, unless a single record is larger.
BATCH_BYTES = 1_048_576
#: The first retry's backoff ceiling, seconds; doubled each failure up to :data:`MAX_BACKOFF`.
FIRST_BACKOFF = 0.5
MAX_BACKOFF = 30.0
#: Seconds one POST may take, connecting included.
POST_TIMEOUT = 10.0
#: Seconds between two overflow warnings in the log (each counts the records dropped since the last).
WARN_EVERY = 10.0
#: The ``reason`` label of dropped records: the buffer was full, or shutdown came before delivery.
DROP_REASONS = ("overflow", "shutdown")
#: The ``reason`` label of failed POSTs: the sink answered a non-2xx status, or could not be reached.
FAILURE_REASONS = ("status", "network")


@dataclass(frozen=True)
class SinkConfig:
    """Where and how to ship: the URL, extra headers (never logged), the buffer's bounds and the
    shutdown limit."""

    url: str
    headers: Mapping[str, str]
    max_records: int
    max_bytes: int
    shutdown_seconds: float

    @classmethod
    def of(cls, url: str, token_file: Path | None, max_records: int, max_bytes: int,
           shutdown_seconds: float) -> "SinkConfig":
        """Checked settings; raises ValueError naming the setting that is unusable."""
        if not url.startswith(("http://", "https://")):
            raise ValueError("COVREQ_DECISION_LOG_URL must be an http:// or https:// URL")
        if max_records < 1 or max_bytes < 1:
            raise ValueError("COVREQ_DECISION_LOG_MAX_RECORDS and COVREQ_DECISION_LOG_MAX_BYTES must be at least 1")
        headers = {}
        if token_file is not None:
            try:
                token = token_file.read_text(encoding="utf-8").strip()
            except (OSError, UnicodeDecodeError) as exc:
                raise ValueError(f"COVREQ_DECISION_LOG_TOKEN_FILE {token_file}: {getattr(exc, 'strerror', None) or exc}") from None
            headers["Authorization"] = f"Bearer {token}"
        return cls(url, headers, max_records, max_bytes, shutdown_seconds)


class DecisionLog:
    """Ships audit lines to the sink from a background thread; :meth:`offer` never blocks on it."""

    def __init__(self, config: SinkConfig, registry: CollectorRegistry) -> None:
        self.config = config
        self._buffer: deque[tuple[int, bytes]] = deque()
        self._bytes = 0
        self._next_seq = 0
        self._dropped_unlogged = 0
        self._last_warning = 0.0
        self._stopping = False
        self._wake = threading.Condition()
        self.sent = Counter("covreq_decision_log_sent", "Audit records delivered to the decision-log sink",
                            registry=registry)
        self.dropped = Counter("covreq_decision_log_dropped", "Audit records never delivered to the sink, by reason",
                               ("reason",), registry=registry)
        self.failures = Counter("covreq_decision_log_post_failures", "POSTs to the decision-log sink that failed",
                                ("reason",), registry=registry)
        for reason in DROP_REASONS:
            self.dropped.labels(reason)
        for reason in FAILURE_REASONS:
            self.failures.labels(reason)
        self._thread = threading.Thread(target=self._run, name="covreq-decision-log", daemon=True)

    @classmethod
    def from_settings(cls, settings: Settings, registry: CollectorRegistry) -> "DecisionLog | None":
        """The sink the settings configure (``COVREQ_DECISION_LOG_URL``), or None; raises ValueError."""
        if not settings.decision_log_url:
            return None
        return cls(SinkConfig.of(settings.decision_log_url, settings.decision_log_token_file,
                                 settings.decision_log_max_records, settings.decision_log_max_bytes,
                                 settings.decision_log_shutdown_seconds), registry)

    def start(self) -> None:
        """Start the sending thread."""
        self._thread.start()

    def offer(self, line: bytes) -> None:
        """Queue one audit line; the oldest are dropped (and counted) while it does not fit."""
        with self._wake:
            self._buffer.append((self._next_seq, line))
            self._next_seq += 1
            self._bytes += len(line)
            dropped = 0
            while len(self._buffer) > self.config.max_records or self._bytes > self.config.max_bytes:
                self._bytes -= len(self._buffer.popleft()[1])
                dropped += 1
            if dropped:
                self._overflowed(dropped)
            self._wake.notify()

    def _overflowed(self, dropped: int) -> None:
        """Count dropped records; log at most one warning per :data:`WARN_EVERY` seconds (caller holds the lock)."""
        self.dropped.labels("overflow").inc(dropped)
        self._dropped_unlogged += dropped
        now = time.monotonic()
        if now - self._last_warning >= WARN_EVERY:
            log.warning("the decision-log buffer is full: the oldest records were dropped", extra={
                "event": "decision-log-overflow", "dropped": self._dropped_unlogged,
                "max_records": self.config.max_records, "max_bytes": self.config.max_bytes})
            self._dropped_unlogged, self._last_warning = 0, now

    def pending(self) -> int:
        """Records not yet delivered."""
        with self._wake:
            return len(self._buffer)

    def close(self) -> None:
        """Deliver what is left within ``shutdown_seconds``, then stop; count and log what stays undelivered."""
        with self._wake:
            self._stopping = True
            self._wake.notify()
        if self._thread.is_alive():
            self._thread.join(self.config.shutdown_seconds + 1)
        with self._wake:
            left = len(self._buffer)
            self._buffer.clear()
            self._bytes = 0
        if left:
            self.dropped.labels("shutdown").inc(left)
            log.error("decision-log records not delivered before shutdown", extra={
                "event": "decision-log-undelivered", "records": left})

    def _batch(self) -> list[tuple[int, bytes]]:
        """The oldest records, up to one batch's bounds (caller holds the lock)."""
        batch: list[tuple[int, bytes]] = []
        size = 0
        for seq, line in self._buffer:
            if batch and (len(batch) >= BATCH_RECORDS or size + len(line) > BATCH_BYTES):
                break
            batch.append((seq, line))
            size += len(line)
        return batch

    def _delivered(self, last_seq: int) -> int:
        """Remove the records up to ``last_seq`` that are still buffered (overflow may have dropped some)."""
        removed = 0
        with self._wake:
            while self._buffer and self._buffer[0][0] <= last_seq:
                self._bytes -= len(self._buffer.popleft()[1])
                removed += 1
        return removed

    def _run(self) -> None:
        """Send batches until stopped: wait for records, post, back off on failure."""
        failures = 0
        deadline: float | None = None
        with httpx.Client(timeout=POST_TIMEOUT, headers=dict(self.config.headers)) as client:
            while True:
                with self._wake:  # sent as soon as there is one; more join while a POST is under way
                    while not self._stopping and not self._buffer:
                        self._wake.wait()
                    if self._stopping and deadline is None:
                        deadline = time.monotonic() + self.config.shutdown_seconds
                    batch = self._batch()
                if not batch:
                    if self._stopping:
                        return
                    continue
                if deadline is not None and time.monotonic() >= deadline:
                    return
                if self._post(client, batch):
                    self.sent.inc(self._delivered(batch[-1][0]))
                    failures = 0
                    continue
                failures += 1
                pause = random.uniform(0, min(MAX_BACKOFF, FIRST_BACKOFF * 2 ** (failures - 1)))
                if deadline is not None:
                    time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
                    continue
                end = time.monotonic() + pause
                with self._wake:  # new records do not shorten a backoff; a shutdown does
                    while not self._stopping and end - time.monotonic() > 0:
                        self._wake.wait(end - time.monotonic())

    def _post(self, client: httpx.Client, batch: list[tuple[int, bytes]]) -> bool:
        """POST one batch; True when the sink answered 2xx."""
        body = gzip.compress(b"".join(line for _, line in batch), compresslevel=6)
        try:
            answer = client.post(self.config.url, content=body, headers={
                "Content-Type": "application/x-ndjson", "Content-Encoding": "gzip"})
        except Exception as exc:  # noqa: BLE001 - httpx's errors and anything else: the thread must live on
            self.failures.labels("network").inc()
            log.warning("the decision-log sink could not be reached", extra={
                "event": "decision-log-post-failed", "error": type(exc).__name__, "records": len(batch)})
            return False
        if 200 <= answer.status_code < 300:
            return True
        self.failures.labels("status").inc()
        log.warning("the decision-log sink refused a batch", extra={
            "event": "decision-log-post-failed", "status": answer.status_code, "records": len(batch)})
        return False
