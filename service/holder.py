"""The current rule set of a running service and its safe, atomic reload."""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable

import engine
from service import heap
from service.metrics import Metrics

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

    def __init__(self, path: str, loader: Callable[[str], engine.RuleSet] = engine.load,
                 metrics: Metrics | None = None) -> None:
        self.path = path
        self._loader = loader
        self._metrics = metrics or Metrics()
        self._reload_lock = threading.Lock()
        self._current, seconds = self._load(path)
        self._metrics.loaded(self._current, seconds)
        self.last_error: ReloadFailure | None = None

    @property
    def current(self) -> engine.RuleSet:
        """The rule set in service now."""
        return self._current

    @property
    def metrics(self) -> Metrics:
        """The metrics this holder counts its loads and refusals in."""
        return self._metrics

    def _load(self, path: str) -> tuple[engine.RuleSet, float]:
        """The rule set at ``path`` and the seconds its load took."""
        began = time.perf_counter()
        ruleset = self._loader(path)
        return ruleset, time.perf_counter() - began

    def reload(self, path: str | None = None, source: str = "tree", expected: str | None = None
               ) -> ReloadFailure | None:
        """Load the tree at ``path`` (default: the tree in service); swap it in if it loads (and, with
        ``expected``, has that digest: a bundle's), else keep the old one. A tree swapped in becomes
        the one later reloads read.

        Returns the failure, or None on success. Concurrent reloads run one after another.
        """
        path = path or self.path
        with self._reload_lock:
            try:
                fresh, seconds = self._load(path)
            except engine.LoadError as err:
                return self.refuse([str(p) for p in err.problems], source,
                                   [f"{p.path}:{p.line}:{p.column}: {p.code}" for p in err.problems])
            except OSError as err:
                return self.refuse([f"{path}: E-io: {err}"], source, [f"{path}: E-io"])
            except Exception as err:  # noqa: BLE001 - a loader bug must not pass for a good reload
                log.exception("reload crashed", extra={"event": "reload-crashed", "ruleset": self._current.digest,
                                                       "source": source})
                return self.refuse([f"{path}: E-internal: the loader failed ({type(err).__name__}); "
                                    "the log has the traceback"], source, [f"{path}: E-internal"])
            if expected is not None and fresh.digest != expected:
                return self.refuse([f"{path}: E-digest: the rules read have digest {fresh.digest}, not the "
                                    f"bundle's {expected}: the folder changed after it was checked"],
                                   source, [f"{path}: E-digest"])
            previous, self._current, self.path = self._current.digest, fresh, path
            self.last_error = None
            heap.settle()  # the new rule set lives until the next reload; the old one's garbage goes
            self._metrics.loaded(fresh, seconds)
            log.info("rule set reloaded", extra={"event": "reloaded", "ruleset": fresh.digest,
                                                 "previous": previous, "source": source})
            return None

    def settled(self) -> None:
        """The rules in service are the latest after all (a bundle URL says so): forget the last refusal."""
        self.last_error = None

    def refuse(self, problems: list[str], source: str = "tree", places: list[str] | None = None) -> ReloadFailure:
        """Record a refused reload: log each problem, keep it for ``/readyz``, count it. ``places``
        (what ``/readyz`` shows) default to the problems, for problems that quote no rule file."""
        failure = ReloadFailure(datetime.now(timezone.utc), problems, problems if places is None else places)
        for problem in problems:
            log.error("reload refused: %s", problem, extra={
                "event": "reload-failed", "problem": problem, "ruleset": self._current.digest,
                "source": source})
        self.last_error = failure
        self._metrics.refused(source)
        return failure
