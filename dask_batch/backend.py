"""Answer a worklist's orders on a Dask cluster, a local one or one already running.

The driver reads the worklist as :func:`engine.batch.run` always does, packs the rule tree as a bundle
(engine/bundle.py) and sends it once to every worker. The orders go out in partitions of whole orders,
so pairing rules still see every line of an order, as marshalled plain data (faster than pickle
both ways). Each worker unpacks and loads the rule set once, keeps it for every partition it answers,
and returns the rendered lines with a partial summary; the driver reads the results one at a time,
adds the summaries up, and ``run`` writes the lines in input order.
"""
from __future__ import annotations

import marshal
import math
import shutil
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from distributed import Client, LocalCluster, as_completed

import engine
from engine.batch import AnsweredLine, Rendered, Summary, answer_orders
from engine.bundle import build, unpack
from engine.progress import Progress
from engine.worklist import Order, WorklistError

#: Service lines per partition at most, about: large enough that scheduling costs little per line.
PARTITION_LINES = 20_000

_loaded: dict[str, engine.RuleSet] = {}
_loading = threading.Lock()
#: Rule sets this process has loaded from bundles (each worker loads each rule set once).
loads = 0


def partitions(orders: list[Order], lines: int = PARTITION_LINES) -> list[list[Order]]:
    """The orders in consecutive groups of about ``lines`` service lines; an order is never split."""
    groups: list[list[Order]] = [[]]
    count = 0
    for order in orders:
        if count >= lines:
            groups.append([])
            count = 0
        groups[-1].append(order)
        count += len(order.rows)
    return [group for group in groups if group]


def worker_rules(bundle: bytes, digest: str) -> engine.RuleSet:
    """The rule set of ``bundle`` (whose rule-set digest is ``digest``), loaded once per process."""
    global loads
    with _loading:
        if digest not in _loaded:
            folder = Path(tempfile.mkdtemp(prefix="covreq-worker-"))
            try:
                unpack(bundle, folder)
                rules = engine.load(folder)
            finally:
                shutil.rmtree(folder, ignore_errors=True)
            if rules.digest != digest:
                raise WorklistError(f"a worker loaded rule set {rules.digest}, the driver {digest}")
            _loaded[digest] = rules
            loads += 1
        return _loaded[digest]


def pack(orders: list[Order]) -> bytes:
    """Orders as compact bytes for the trip to a worker (marshal: plain data, C speed both ways)."""
    return marshal.dumps([tuple(vars(order).values()) for order in orders])


def answer_partition(bundle: bytes, digest: str, orders: bytes,
                     render: Callable[[AnsweredLine], Any]) -> tuple[bytes, Summary]:
    """Answer one packed partition on a worker: its rendered lines (marshalled) and its summary."""
    summary = Summary()
    answered = answer_orders(worker_rules(bundle, digest), [Order(*fields) for fields in marshal.loads(orders)],
                             render, summary)
    return marshal.dumps(answered), summary


class DaskBackend:
    """A back-end for :func:`engine.batch.run` on ``workers`` local Dask workers (one process and
    thread each) or on the scheduler at ``scheduler`` (``tcp://host:8786``)."""

    def __init__(self, workers: int | None = None, scheduler: str | None = None,
                 partition_lines: int = PARTITION_LINES, connect_seconds: float = 30.0) -> None:
        if (workers is None) == (scheduler is None):
            raise ValueError("give either a number of local workers or a scheduler address")
        self.workers, self.scheduler, self.partition_lines = workers, scheduler, partition_lines
        self.connect_seconds = connect_seconds

    @contextmanager
    def _client(self) -> Iterator[Client]:
        if self.scheduler:
            try:
                client = Client(self.scheduler, timeout=self.connect_seconds)
            except OSError as err:
                raise WorklistError(f"cannot reach the Dask scheduler at {self.scheduler}: {err}") from None
            with client:
                yield client
            return
        with LocalCluster(n_workers=self.workers, threads_per_worker=1, processes=True,
                          dashboard_address=None) as cluster, Client(cluster) as client:
            yield client

    def __call__(self, rules: engine.RuleSet, orders: list[Order], render: Callable[[AnsweredLine], Any],
                 summary: Summary, progress: Progress) -> list[Rendered]:
        """Answer ``orders`` on the cluster; the partial summaries are added to ``summary``."""
        data, manifest = build(Path(rules.source))
        if manifest.ruleset != rules.digest:
            raise WorklistError(f"the rule tree {rules.source} changed after it was loaded; run the batch again")
        answered: list[Rendered] = []
        with self._client() as client:
            bundle = client.scatter(data, broadcast=True)
            # at least four partitions per worker thread, so that a small worklist keeps them all busy
            threads = max(sum(client.nthreads().values()), 1)
            lines = progress.total
            sizes = {}
            for group in partitions(orders, max(1, min(self.partition_lines, math.ceil(lines / (4 * threads))))):
                future = client.submit(answer_partition, bundle, rules.digest, pack(group), render, pure=False)
                sizes[future] = sum(len(order.rows) for order in group)
            for future in as_completed(list(sizes)):  # one result at a time, released once read
                packed, part = future.result()
                answered += marshal.loads(packed)
                summary.merge(part)
                progress.advance(sizes.pop(future))
                future.release()
        return answered
