"""Remembering answers to repeated requests.

A rule set answers the same request the same way (its rules never change), so an answer can be
kept and handed out again. The cache is opt-in per call (``RuleSet.evaluate(..., remember=key)``):
the service keys an answer by the request's exact JSON bytes, other callers by :func:`fingerprint`
of the parsed request (:mod:`marshal`, C speed; key order and the JSON types 1, 1.0 and true stay
distinct). Answers are kept marshalled, so every caller gets a fresh copy no other caller can change.
"""
from __future__ import annotations

import marshal
import threading
from collections import OrderedDict
from typing import Any


#: Format 2 writes no back-references, whose use depends on reference counts: equal values
#: always give equal bytes.
_VERSION = 2
#: Requests whose key is longer than this are answered afresh every time, not kept.
MAX_KEY_BYTES = 65536
#: Bytes one entry costs beside its key and answer (two bytes objects, a tuple and the LRU's
#: bookkeeping), as tracemalloc measures it on CPython 3.11 (an upper bound since the LRU is an
#: OrderedDict).
ENTRY_OVERHEAD = 256


def fingerprint(value: Any) -> bytes | None:
    """A hashable stand-in for a JSON value, or None when it holds something marshal refuses."""
    try:
        key = marshal.dumps(value, _VERSION)
    except ValueError:  # an unsupported type, or nesting deeper than marshal allows
        return None
    return key if len(key) <= MAX_KEY_BYTES else None


class AnswerCache:
    """A thread-safe LRU map from request fingerprints to answers, counting hits and misses.

    It holds at most ``max_bytes``, counting each entry's key, marshalled answer and overhead:
    keys are caller-chosen, so they are paid for like answers. Recency is kept by an
    :class:`OrderedDict` (C), so a lookup costs a dict probe under a lock."""

    def __init__(self, max_bytes: int) -> None:
        self._entries: OrderedDict[bytes, tuple[bytes, int]] = OrderedDict()
        self._bytes = 0
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def get(self, key: bytes) -> Any | None:
        """A fresh copy of the answer kept for ``key``, or None."""
        with self._lock:
            kept = self._entries.get(key)
            if kept is None:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
        return marshal.loads(kept[0])

    def put(self, key: bytes, answer: Any) -> None:
        """Keep ``answer`` (plain JSON data) for ``key`` (a fingerprint), forgetting the least
        recently used answers as the budget needs."""
        kept = marshal.dumps(answer)
        cost = len(key) + len(kept) + ENTRY_OVERHEAD
        if cost > self.max_bytes:
            return
        with self._lock:
            entries = self._entries
            old = entries.pop(key, None)
            if old is not None:
                self._bytes -= old[1]
            while self._bytes + cost > self.max_bytes:
                self._bytes -= entries.popitem(last=False)[1][1]
            entries[key] = (kept, cost)
            self._bytes += cost

    def clear(self) -> None:
        """Forget every answer (the counts stay)."""
        with self._lock:
            self._entries.clear()
            self._bytes = 0

    def info(self) -> dict[str, int]:
        """Hits, misses, entries kept, and bytes used (keys, answers and overhead) out of the capacity."""
        with self._lock:
            return {"hits": self.hits, "misses": self.misses, "entries": len(self._entries),
                    "bytes": self._bytes, "max_bytes": self.max_bytes}
