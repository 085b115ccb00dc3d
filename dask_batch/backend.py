"""Answer a worklist's orders on a Dask cluster, a local one or one already running.

The driver reads the worklist as :func:`engine.worklists.batch.run` always does, packs the rule tree as a bundle
(engine/loading/bundle.py) and sends it once to every worker. The orders go out in partitions of whole orders,
so pairing rules still see every line of an order, as marshalled plain data (faster than pickle
both ways). Each worker unpacks and loads the rule set once, keeps it for every partition it answers,
and returns the rendered lines with a partial summary as MessagePack bytes; the driver reads the
results one at a time with a typed decoder (data only, never code), adds the summaries up, and
``run`` writes the lines in input order.

The scheduler and the workers are trusted: Dask's own protocol pickles its messages, so a hostile
one can still run code in the driver; TLS (:class:`Tls`) keeps others from joining or reading.
"""
from __future__ import annotations

import marshal
import math
import shutil
import tempfile
import threading
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, TextIO

import msgspec
from distributed import Client, LocalCluster, as_completed
from distributed.security import Security

import engine
from engine.worklists.batch import AnsweredLine, Rendered, Summary, answer_orders
from engine.loading.bundle import build, unpack
from engine.worklists.progress import Progress
from engine.worklists.worklist import Order, Rejection, WorklistError

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


class Counts(msgspec.Struct, array_like=True):
    """A partition's :class:`Summary` as plain data, for the trip back to the driver."""

    orders: int
    lines: int
    answers: dict[str, int]
    pa_by_payer: dict[str, int]
    pa_by_policy: dict[str, int]
    rejected: list[tuple[int, str]]
    failed: list[str]

    @classmethod
    def of(cls, summary: Summary) -> Counts:
        """The counts of ``summary``."""
        return cls(summary.orders, summary.lines, summary.answers, summary.pa_by_payer, summary.pa_by_policy,
                   [(r.row, r.reason) for r in summary.rejected], summary.failed)

    def summary(self) -> Summary:
        """The :class:`Summary` these counts were made of."""
        return Summary(self.orders, self.lines, Counter(self.answers), Counter(self.pa_by_payer),
                       Counter(self.pa_by_policy), [Rejection(row, reason) for row, reason in self.rejected],
                       list(self.failed))


class _Result(msgspec.Struct, array_like=True):
    """What a worker sends back for one partition: its rendered lines (a CSV or Parquet row's cells,
    or a JSON Lines text) and its counts; plain data, decoded against these types."""

    lines: list[tuple[int, int, str | list[int | str]]]
    counts: Counts


_DECODER = msgspec.msgpack.Decoder(_Result)


def encode(answered: list[Rendered], summary: Summary) -> bytes:
    """A partition's answer as MessagePack bytes, for the trip back to the driver."""
    return msgspec.msgpack.encode(_Result(answered, Counts.of(summary)))


def read_result(result: object, decoder: msgspec.msgpack.Decoder[Any]) -> Any:
    """What a worker sent, read by ``decoder``; :class:`WorklistError` for anything else. Only bytes
    are accepted, read by a decoder of plain data that cannot construct objects, let alone run code."""
    if not isinstance(result, bytes):
        raise WorklistError(f"a Dask worker answered with a {type(result).__name__}, not covreq's bytes")
    try:
        return decoder.decode(result)
    except msgspec.MsgspecError as err:
        raise WorklistError(f"a Dask worker answered with something that is not covreq's result: {err}") from None


def decode(result: object) -> tuple[list[Rendered], Summary]:
    """The lines and summary a worker sent (see :func:`read_result`)."""
    sent = read_result(result, _DECODER)
    return sent.lines, sent.counts.summary()  # type: ignore[no-any-return]


def answer_partition(bundle: bytes, digest: str, orders: bytes, render: Callable[[AnsweredLine], Any]) -> bytes:
    """Answer one packed partition on a worker: its rendered lines and summary as :func:`encode` gives them."""
    summary = Summary()
    answered = answer_orders(worker_rules(bundle, digest), [Order(*fields) for fields in marshal.loads(orders)],
                             render, summary)
    return encode(answered, summary)


def _bundle(rules: engine.RuleSet) -> bytes:
    """The rule tree ``rules`` was loaded from, as a bundle; :class:`WorklistError` if it has changed since."""
    data, manifest = build(Path(rules.source))
    if manifest.ruleset != rules.digest:
        raise WorklistError(f"the rule tree {rules.source} changed after it was loaded; run the batch again")
    return data


@dataclass(frozen=True)
class Tls:
    """TLS for every Dask connection: the PEM files of the CA that signed the cluster's certificates,
    of this client's certificate, and of its key (when not in the certificate's file)."""

    ca_file: str
    cert: str
    key: str | None = None

    def security(self) -> Security:
        """The ``distributed`` security of these files, encryption required; the files are read now."""
        pems: dict[str, str] = {}
        for name, path in (("tls_ca_file", self.ca_file), ("tls_client_cert", self.cert), ("tls_client_key", self.key)):
            if path is not None:
                try:
                    pems[name] = Path(path).read_text(encoding="ascii")
                except (OSError, UnicodeDecodeError) as err:
                    raise WorklistError(f"cannot read the TLS file {path}: {err}") from None
        return Security(require_encryption=True, **pems)


class DaskBackend:
    """A back-end for :func:`engine.worklists.batch.run` on ``workers`` local Dask workers (one process and
    thread each, over TLS with a certificate made for the run) or on the scheduler at ``scheduler``
    (``tcp://host:8786``, or ``tls://host:8786`` with ``tls``, or with the TLS files of Dask's own
    configuration when ``tls`` is None)."""

    def __init__(self, workers: int | None = None, scheduler: str | None = None,
                 partition_lines: int = PARTITION_LINES, connect_seconds: float = 30.0, tls: Tls | None = None,
                 partitioned_by_order: bool = False) -> None:
        if (workers is None) == (scheduler is None):
            raise ValueError("give either a number of local workers or a scheduler address")
        if tls is not None and not (scheduler or "").startswith("tls://"):
            raise WorklistError("the Dask TLS files need a tls:// scheduler address")
        self.workers, self.scheduler, self.partition_lines = workers, scheduler, partition_lines
        self.connect_seconds, self.tls, self.partitioned_by_order = connect_seconds, tls, partitioned_by_order

    @contextmanager
    def _client(self) -> Iterator[Client]:
        if self.scheduler:
            try:
                client = Client(self.scheduler, timeout=self.connect_seconds,
                                security=self.tls.security() if self.tls else Security())
            except (OSError, TypeError, ValueError) as err:  # TypeError: tls:// without TLS settings
                raise WorklistError(f"cannot reach the Dask scheduler at {self.scheduler}: {err}") from None
            with client:
                yield client
            return
        # TLS with a certificate of this run only: another user of the machine can neither submit
        # work to the cluster nor read the patient columns on their way
        with LocalCluster(n_workers=self.workers, threads_per_worker=1, processes=True, dashboard_address=None,
                          security=Security.temporary()) as cluster, Client(cluster) as client:
            yield client

    def answer_dataset(self, rules: engine.RuleSet, source: str, target: str, report: TextIO) -> Summary:
        """Answer the Parquet dataset ``source`` into the folder ``target``, the workers reading and
        writing the data (:mod:`dask_batch.dataset`)."""
        from .dataset import answer_dataset  # pandas and dask.dataframe: imported for datasets only

        data = _bundle(rules)
        with self._client() as client:
            return answer_dataset(client, rules, data, source, target, report, self.partitioned_by_order)

    def __call__(self, rules: engine.RuleSet, orders: list[Order], render: Callable[[AnsweredLine], Any],
                 summary: Summary, progress: Progress) -> list[Rendered]:
        """Answer ``orders`` on the cluster; the partial summaries are added to ``summary``."""
        data = _bundle(rules)
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
                lines, part = decode(future.result())
                answered += lines
                summary.merge(part)
                progress.advance(sizes.pop(future))
                future.release()
        return answered
