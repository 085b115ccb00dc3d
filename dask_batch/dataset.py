"""A Parquet dataset answered into a Parquet dataset on Dask: the workers read, answer and write.

The driver reads only the files' footers (:func:`engine.worklists.parquet.plan`: the columns, and pieces of
whole row groups with the number of their first row) and keeps the plan and the partitions' counts.
Everything else happens on the workers, with Dask's own machinery:

1. ``dask.dataframe.from_map`` reads each piece as text cells with its row numbers;
2. the rows are shuffled by ``order_id`` (Dask's shuffle), so that an order's rows meet in one
   partition; an input declared partitioned by order (each file holds whole orders) is not
   shuffled, its files are checked instead: an order found in two files is rejected, never answered
   twice (its rows named, with the files);
3. each partition is grouped into orders and answered as one process does (engine.worklists.worklist,
   :func:`engine.worklists.batch.answer_orders`) with the rule set the worker loaded once from the bundle, and
   written as ``part.NNNNN.parquet`` of the output folder, rows in input order; the driver gets its
   counts back as MessagePack bytes, through futures, as each partition ends (progress, retries:
   a partition that still fails is reported by number, never dropped in silence).
"""
from __future__ import annotations

import logging
import math
import posixpath
import sys
import traceback
from typing import Any, Iterable, TextIO

import msgspec
import pandas as pd
from distributed import Client, Future, as_completed

import engine
from engine.worklists.batch import FORMATS, Summary, answer_orders
from engine.worklists.parquet import Piece, filesystem, part_name, piece_rows, plan
from engine.worklists.progress import Progress
from engine.worklists.worklist import Rejection, WorklistError, read_rows

from .backend import Counts, read_result, worker_rules

#: Rows of input per piece read by one task (whole row groups; a row group larger is one piece).
PIECE_ROWS = 100_000
#: Rows per partition answered by one task, about, after the shuffle.
PART_ROWS = 50_000
#: Times Dask runs a failed partition again before it is reported.
RETRIES = 2
#: Orders found in more than one file of an input declared partitioned by order, at most: past it
#: the declaration is taken as wrong and the run stops, nothing answered.
MAX_SPLIT_ORDERS = 10_000
#: The column holding each row's number in the dataset (the file's columns are ``c0``, ``c1``, ...).
ROW = "row"
#: The column holding the number of the piece a row was read from.
PIECE = "piece"

_COUNTS = msgspec.msgpack.Decoder(Counts)


def _frame(rows: Iterable[tuple[int, list[str]]], width: int, piece: int) -> pd.DataFrame:
    """Numbered text rows as a frame of ``c0``, ``c1``, ... (cells stripped, so that the shuffle
    groups order ids as :func:`engine.worklists.worklist.read_rows` does) with :data:`ROW` and :data:`PIECE`."""
    numbers, cells = [], []
    for number, values in rows:
        numbers.append(number)
        cells.append([value.strip() for value in values])  # as read_rows takes them: " A1" is order A1
    frame = pd.DataFrame(cells or None, columns=[f"c{i}" for i in range(width)], dtype=object)
    frame[ROW] = pd.Series(numbers, dtype="int64", index=frame.index)
    frame[PIECE] = pd.Series([piece] * len(numbers), dtype="int64", index=frame.index)
    return frame


def load_piece(job: tuple[str, Piece, int, int, str | None]) -> pd.DataFrame:
    """On a worker: piece ``number`` of the dataset ``name`` as text cells, as
    :func:`engine.worklists.parquet.read_parquet` reads them: all its ``width`` columns, or only the column
    named ``only`` (in ``c0``, the others blank)."""
    name, piece, number, width, only = job
    fs, _ = filesystem(name)
    if only is None:
        return _frame(piece_rows(fs, piece), width, number)
    blanks = [""] * (width - 1)
    return _frame(((row, cells + blanks) for row, cells in piece_rows(fs, piece, [only])), width, number)


def _where(error: BaseException) -> str:
    """The type of ``error`` and the place it was raised (file:line, function): no values, which may
    be patient data."""
    frames = traceback.extract_tb(error.__traceback__)
    place = f" at {posixpath.basename(frames[-1].filename)}:{frames[-1].lineno} ({frames[-1].name})" if frames else ""
    message = str(error) if isinstance(error, WorklistError) else ""
    return f"{type(error).__name__}{place}" + (f": {message}" if message else "")


def answer_part(frame: pd.DataFrame, number: int, bundle: bytes, digest: str, header: list[str], target: str,
                split: dict[str, str]) -> bytes:
    """On a worker: answer one partition's rows (whole orders) and write them as part ``number`` of
    the dataset folder ``target``; return its counts as MessagePack bytes. Orders in ``split`` (an
    id -> the files it was found in) are rejected, not answered."""
    rules = worker_rules(bundle, digest)
    frame = frame.sort_values(ROW, kind="stable")
    columns = [f"c{i}" for i in range(len(header))]
    rows = zip(frame[ROW].tolist(), frame[columns].itertuples(index=False, name=None))
    orders, rejected, _ = read_rows(header, ((row, list(cells)) for row, cells in rows))
    summary = Summary(rejected=rejected)
    if split:
        for order in [o for o in orders if o.order_id in split]:
            reason = (f"order_id: the order's rows are in more than one file ({split[order.order_id]}), though the "
                      "input was declared partitioned by order; not answered")
            summary.rejected += [Rejection(row, reason) for row in sorted(set(order.rows))]
        orders = [o for o in orders if o.order_id not in split]
    parquet = FORMATS[".parquet"]
    answered = answer_orders(rules, orders, parquet.render, summary)
    if answered:
        answered.sort(key=lambda line: (line[0], line[1]))
        parquet.write((record for _, _, record in answered), f"{target.rstrip('/')}/{part_name(number)}")
    return msgspec.msgpack.encode(Counts.of(summary))


def _split_in(frame: pd.DataFrame, limit: int) -> pd.DataFrame:
    """The (order id, piece) pairs of the order ids found in more than one piece, at most ``limit`` + 1."""
    pairs = frame[["c0", PIECE]].drop_duplicates()
    pairs = pairs[pairs["c0"] != ""]
    return pairs[pairs.duplicated("c0", keep=False)].head((limit + 1) * 2)


def split_orders(client: Client, ids: Any, files: list[str]) -> dict[str, str]:
    """Order ids found in more than one file of an input declared partitioned by order (``ids``: a
    frame of the order ids in ``c0``, one partition per file of ``files``), each with the names of
    its files; :class:`WorklistError` past :data:`MAX_SPLIT_ORDERS`."""
    found = client.compute(ids[["c0", PIECE]].shuffle("c0").map_partitions(_split_in, MAX_SPLIT_ORDERS)).result()
    split: dict[str, list[str]] = {}
    for order_id, piece in zip(found["c0"].tolist(), found[PIECE].tolist()):
        split.setdefault(order_id, []).append(posixpath.basename(files[piece]))
    if len(split) > MAX_SPLIT_ORDERS:
        raise WorklistError(f"more than {MAX_SPLIT_ORDERS} orders have rows in more than one file, though the input "
                            "was declared partitioned by order; run without --partitioned-by-order (covreq then "
                            "shuffles the rows by order_id)")
    return {order_id: ", ".join(sorted(set(names))) for order_id, names in split.items()}


def _prepare(target: str) -> None:
    """Make the output folder, refusing one that holds files already (old parts would mix in)."""
    fs, path = filesystem(target)
    try:
        if fs.exists(path) and (not fs.isdir(path) or fs.ls(path)):
            raise WorklistError(f"{target}: the output folder must be new or empty")
        fs.makedirs(path, exist_ok=True)
    except OSError as err:
        raise WorklistError(f"cannot write {target}: {err}") from None


def answer_dataset(client: Client, rules: engine.RuleSet, bundle: bytes, source: str, target: str, report: TextIO,
                   by_order: bool = False) -> Summary:
    """Answer the Parquet dataset ``source`` into the folder ``target`` on ``client``'s cluster (see
    the module's docstring); ``by_order`` declares each file of ``source`` to hold whole orders."""
    import dask
    import dask.dataframe as dd

    # a local cluster's scheduler runs in this process: its notes on each shuffle are not the user's
    logging.getLogger("distributed.shuffle").setLevel(logging.ERROR)

    header, pieces = plan(source, sys.maxsize if by_order else PIECE_ROWS)  # by order: a piece per file
    for note in read_rows(header, [])[2]:
        report.write(f"covreq batch: {note}\n")
    _prepare(target)
    names = [name.strip().lower() for name in header]
    order = names.index("order_id") if "order_id" in names else None
    width = len(header)
    meta = _frame([], width, 0)
    frame = dd.from_map(load_piece, [(source, piece, n, width, None) for n, piece in enumerate(pieces)], meta=meta,
                        enforce_metadata=False)
    split: dict[str, str] = {}
    total = sum(piece.rows for piece in pieces)
    if order is not None and by_order:
        ids = dd.from_map(load_piece, [(source, piece, n, width, header[order]) for n, piece in enumerate(pieces)],
                          meta=meta, enforce_metadata=False)
        split = split_orders(client, ids, [piece.path for piece in pieces])
    elif order is not None:
        threads = max(sum(client.nthreads().values()), 1)
        frame = frame.shuffle(f"c{order}", npartitions=max(len(pieces), math.ceil(total / PART_ROWS), 2 * threads))
    bundled = client.scatter(bundle, broadcast=True)
    tasks = [dask.delayed(answer_part)(part, n, bundled, rules.digest, header, target, split)
             for n, part in enumerate(frame.to_delayed())]
    futures: list[Future] = client.compute(tasks, retries=RETRIES)
    numbers = {future.key: n for n, future in enumerate(futures)}
    summary = Summary()
    with Progress(total, report) as progress:
        for future in as_completed(futures):
            number = numbers[future.key]
            if future.status != "finished":  # an error after the retries, or cancelled (the cluster went away)
                where = pieces[number].path if by_order or order is None else f"output {part_name(number)}"
                why = _where(future.exception()) if future.status == "error" else future.status
                summary.failed.append(f"partition {number + 1} of {len(futures)} ({posixpath.basename(where)}) failed "
                                      f"after {RETRIES} retries: {why}; its lines are not in the output")
            else:
                part = read_result(future.result(), _COUNTS).summary()
                summary.merge(part)
                progress.advance(part.lines + len(part.rejected))
            future.release()
    return summary

