"""The ``process_*`` and ``python_*`` series (CPU, memory, descriptors, garbage collection, Python
version) of every worker, also with ``covreq serve --workers N``.

prometheus-client's process, GC and platform collectors describe the process that runs them, so
in multiprocess mode (where a scrape is answered by any one worker from the files all workers
write) they would describe only the worker that happened to be scraped. Here each worker copies
its own collectors' values into multiprocess metrics of the same names, when scraped and every
:data:`SAMPLE_SECONDS` in between: counters (``process_cpu_seconds_total``, ``python_gc_*_total``)
are summed over the workers like covreq's own counters; gauges (memory, descriptors, start time,
``python_info``) carry each live worker's ``pid``. A worker's gauges are dropped when it stops, and
a scrape drops those of workers that died without stopping (``SIGKILL``, out of memory), so the
``pid`` label takes at most as many values as there are live workers.
"""
from __future__ import annotations

import glob
import os
import re
import threading
from typing import Any, Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, multiprocess
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

#: Seconds between two copies of a worker's values (a scraped worker copies its own at the scrape).
SAMPLE_SECONDS = 5.0
_LIVE_FILE = re.compile(r"gauge_live\w+?_(\d+)\.db$")


def standard_collectors(registry: CollectorRegistry) -> None:
    """Register prometheus-client's process, GC and platform collectors (one process: no copies)."""
    ProcessCollector(registry=registry)
    GCCollector(registry=registry)
    PlatformCollector(registry=registry)


class WorkerSampler:
    """Copies this worker's process, GC and platform values into multiprocess metrics."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry
        self._source = CollectorRegistry()  # this process's own values, read at each copy
        standard_collectors(self._source)
        self._metrics: dict[str, Any] = {}
        self._counted: dict[tuple[str, tuple[str, ...]], float] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sample(self) -> None:
        """Copy the current values (counters by their increase since the last copy)."""
        with self._lock:
            for family in self._source.collect():
                for s in family.samples:
                    if family.type == "counter" and s.name.endswith("_total"):
                        self._count(family.name, family.documentation, s.labels, s.value)
                    elif family.type == "gauge":
                        self._gauge(family.name, family.documentation, s.labels).set(s.value)

    def _count(self, name: str, documentation: str, labels: dict[str, str], total: float) -> None:
        key = (name, tuple(labels.values()))
        increase = total - self._counted.get(key, 0.0)
        if increase > 0:
            metric = self._metric(Counter, name, documentation, tuple(labels))
            (metric.labels(*labels.values()) if labels else metric).inc(increase)
            self._counted[key] = total

    def _gauge(self, name: str, documentation: str, labels: dict[str, str]) -> Any:
        metric = self._metric(Gauge, name, documentation, tuple(labels), multiprocess_mode="liveall")
        return metric.labels(*labels.values()) if labels else metric

    def _metric(self, kind: Callable[..., Any], name: str, documentation: str, labels: tuple[str, ...],
                **options: Any) -> Any:
        metric = self._metrics.get(name)
        if metric is None:
            metric = self._metrics[name] = kind(name, documentation, labels, registry=self._registry, **options)
        return metric

    def start(self) -> None:
        """Copy now and every :data:`SAMPLE_SECONDS` until :meth:`stop`."""
        self.sample()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="covreq-process-metrics", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the periodic copies."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_SECONDS):
            self.sample()


def forget_dead_workers(folder: str) -> list[int]:
    """Drop the live gauges of workers in ``folder`` whose process is gone; the pids dropped."""
    dropped = []
    for path in glob.glob(os.path.join(folder, "gauge_live*_*.db")):
        match = _LIVE_FILE.search(os.path.basename(path))
        if match and not _alive(int(match.group(1))):
            multiprocess.mark_process_dead(int(match.group(1)), folder)
            dropped.append(int(match.group(1)))
    return dropped


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive, though not ours
        return True
    return True
