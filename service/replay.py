"""A bounded memory of single-use token ids (``jti``), shared by every JWT check that refuses replays."""
from __future__ import annotations

import threading
from typing import Hashable

from cachetools import TTLCache


class ReplayCache:
    """Remembers each key for ``seconds`` (longer than the tokens it guards live), at most ``size``
    keys at once (past it the oldest are forgotten first). Safe across threads."""

    def __init__(self, size: int, seconds: float) -> None:
        self._seen: TTLCache[Hashable, bool] = TTLCache(size, seconds)
        self._lock = threading.Lock()

    def first_use(self, key: Hashable) -> bool:
        """True the first time ``key`` is offered while remembered, False for a replay."""
        with self._lock:
            if key in self._seen:
                return False
            self._seen[key] = True
            return True
