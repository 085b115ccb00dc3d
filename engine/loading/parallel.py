"""YAML texts read in a worker process while this one compiles, for large rule trees.

Reading a file (libyaml composing it, then its values) is about a third of a load; the rest is
compiling policies, which shares state across the whole tree and stays in the loading process. A
worker sends back each file's values and the spots every policy asks for
(:meth:`engine.loading.yamlsource.Locations.common`): both pickle cheaply, composed nodes do not. A file is
composed here again only to locate something else, which only a problem asks for. Results come
back in the order the texts were given, and every problem is worded and located as when the file
is read here.
"""
from __future__ import annotations

import multiprocessing
import os
import pickle
import threading
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from itertools import islice
from multiprocessing.context import BaseContext
from typing import Any, Iterable, Iterator, TypeVar

from engine.loading.yamlsource import Locations, YamlError, load_yaml

#: Fewest files for which a worker pays for its start: forked, it costs about 5 ms, but started afresh
#: (when this process runs threads) about 0.15 s, what reading 1,000 files in it saves.
MIN_FILES = 1000
#: Texts sent to a worker at a time, and batches under way at most (what is read ahead stays small).
BATCH = 64
AHEAD = 8

Item = TypeVar("Item")
#: A text read: its values and locations, its problem, or None where there was no text.
Read = tuple[Any, Locations] | YamlError | None


def spare_cores() -> int:
    """Cores this process may use besides the one it runs on."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(0, usable - 1)


def read_texts(items: Iterable[tuple[Item, str | None]], count: int,
               workers: int | None = None) -> Iterator[tuple[Item, Read]]:
    """Each item with its text read (None for a text of None), in order. ``count`` is how many items
    there are; ``workers`` how many processes read besides this one (None: one when a core is
    spare and there are at least :data:`MIN_FILES` items; 0: every text is read here). A daemon
    process (a worker of a process pool or of Dask) may start none, so it reads every text itself."""
    if workers is None:
        workers = min(1, spare_cores()) if count >= MIN_FILES else 0
    if workers < 1 or multiprocessing.current_process().daemon:  # a daemon may start no process
        yield from ((item, _read_here(text)) for item, text in items)
        return
    with ProcessPoolExecutor(workers, mp_context=_start_method()) as pool:
        pending: deque[tuple[list[tuple[Item, str | None]], Future[list[bytes]] | None]] = deque()
        queue = iter(items)
        while True:
            while len(pending) < AHEAD and (batch := list(islice(queue, BATCH))):
                pending.append((batch, _submit(pool, [text for _, text in batch])))
            if not pending:
                return
            batch, future = pending.popleft()
            sent = _outcome(future)
            if sent is None:  # the worker is gone (killed, out of memory): read the batch here
                yield from ((item, _read_here(text)) for item, text in batch)
            else:  # each file unpickled as it is used, as each is read when read here
                yield from ((item, _received(blob, text)) for (item, text), blob in zip(batch, sent))


def read_batch(texts: list[str | None]) -> list[bytes]:
    """In a worker: for each text, pickled, its values and common spots, or its problem's message,
    line, column and code, or nothing."""
    sent = []
    for text in texts:
        read = _read_here(text)
        sent.append(pickle.dumps((read.message, read.line, read.column, read.code) if isinstance(read, YamlError)
                                 else () if read is None else (read[0], read[1].common()), pickle.HIGHEST_PROTOCOL))
    return sent


def _start_method() -> BaseContext:
    """Workers are forked when this process runs one thread (a copy starts at once, and runs no
    code of the program's main module again); with more threads, one of which may hold a lock the
    copy would wait for, they start afresh."""
    alone = threading.active_count() == 1 and "fork" in multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if alone else "spawn")


def _submit(pool: ProcessPoolExecutor, texts: list[str | None]) -> Future[list[bytes]] | None:
    try:
        return pool.submit(read_batch, texts)
    except BrokenProcessPool:
        return None


def _outcome(future: Future[list[bytes]] | None) -> list[bytes] | None:
    try:
        return future.result() if future is not None else None
    except BrokenProcessPool:
        return None


def _read_here(text: str | None) -> Read:
    if text is None:
        return None
    try:
        return load_yaml(text)
    except YamlError as exc:
        return exc


def _received(blob: bytes, text: str | None) -> Read:
    sent = pickle.loads(blob)  # noqa: S301 - written by read_batch in this load's own worker
    if len(sent) == 4:
        return YamlError(*sent)
    if not sent:
        return None
    data, spots = sent
    return data, Locations(known=spots, text=text)
