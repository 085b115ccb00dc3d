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
    """A reload that was refused: when it happened and every problem the loader found, in full
    (``problems``) and as places and codes only (``places``: ``file:line:col: code``)."""

    at: datetime
    problems: list[str] = field(default_factory=list)
    places: list[str] = field(default_factory=list)

    def as_dict(self, messages: bool = True) -> dict[str, object]:
        """JSON-ready form, as shown by ``/v1/ruleset``; without ``messages`` (which may quote the
        rule files) as shown by the unauthenticated ``/readyz``."""
        return {"at": self.at.isoformat(timespec="seconds"),
                "problems": self.problems if messages else self.places}


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
            except engine.LoadError as err:
                return self._refuse([str(p) for p in err.problems],
                                    [f"{p.path}:{p.line}:{p.column}: {p.code}" for p in err.problems])
            except OSError as err:
                return self._refuse([f"{self.path}: E-io: {err}"], [f"{self.path}: E-io"])
            except Exception as err:  # noqa: BLE001 - a loader bug must not pass for a good reload
                log.exception("reload crashed", extra={"event": "reload-crashed", "ruleset": self._current.digest})
                return self._refuse([f"{self.path}: E-internal: the loader failed ({type(err).__name__}); "
                                     "the log has the traceback"], [f"{self.path}: E-internal"])
            previous, self._current = self._current.digest, fresh
            self.last_error = None
            log.info("rule set reloaded", extra={"event": "reloaded", "ruleset": fresh.digest,
                                                 "previous": previous})
            return None

    def _refuse(self, problems: list[str], places: list[str]) -> ReloadFailure:
        failure = ReloadFailure(datetime.now(timezone.utc), problems, places)
        for problem in problems:
            log.error("reload refused: %s", problem, extra={
                "event": "reload-failed", "problem": problem, "ruleset": self._current.digest})
        self.last_error = failure
        return failure
