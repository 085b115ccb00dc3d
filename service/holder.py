"""The current rule set of a running service and its safe, atomic reload."""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable

import engine

log = logging.getLogger("covreq.reload")


@dataclass(frozen=True)
class ReloadFailure:
    """A reload that was refused: when it happened and every problem the loader found."""

    at: datetime
    problems: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        """JSON-ready form, as shown by ``/v1/ruleset`` and ``/readyz``."""
        return {"at": self.at.isoformat(timespec="seconds"), "problems": self.problems}


class RuleSetHolder:
    """Holds the immutable rule set that answers requests.

    Readers take ``holder.current`` once per request and use only that object, so an answer
    never mixes two rule sets. ``reload()`` builds a new rule set off to the side and swaps it
    in with one reference assignment; when the tree is broken the old rule set stays and the
    failure is kept in ``last_error`` (and logged with each problem's file:line:col).
    """

    def __init__(self, path: str, loader: Callable[[str], engine.RuleSet] = engine.load) -> None:
        self.path = path
        self._loader = loader
        self._reload_lock = threading.Lock()
        self._current = loader(path)
        self.last_error: ReloadFailure | None = None

    @property
    def current(self) -> engine.RuleSet:
        """The rule set in service now."""
        return self._current

    def reload(self) -> ReloadFailure | None:
        """Load the tree again; swap it in if it loads, else keep the old one.

        Returns the failure, or None on success. Concurrent reloads run one after another.
        """
        with self._reload_lock:
            try:
                fresh = self._loader(self.path)
            except (engine.LoadError, OSError) as err:
                problems = ([str(p) for p in err.problems] if isinstance(err, engine.LoadError)
                            else [f"{self.path}: {err}"])
                return self._refuse(problems)
            previous, self._current = self._current.digest, fresh
            self.last_error = None
            log.info("rule set reloaded", extra={"event": "reloaded", "ruleset": fresh.digest,
                                                 "previous": previous})
            return None

    def _refuse(self, problems: list[str]) -> ReloadFailure:
        failure = ReloadFailure(datetime.now(timezone.utc), problems)
        for problem in problems:
            log.error("reload refused: %s", problem, extra={
                "event": "reload-failed", "problem": problem, "ruleset": self._current.digest})
        self.last_error = failure
        return failure
