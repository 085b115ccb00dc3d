"""Batch at scale: a Parquet dataset answered on local Dask clusters of 1 and 2 workers, in one run.

``.venv/bin/python -m bench.batch_dataset`` writes a seeded dataset of 600,000 service lines in 6
files (bench/worklist.py), then runs ``covreq batch --rules rules/ DATASET/ -o OUT/ --dask-workers N``
for each N as a child process (the driver), and prints per N: wall seconds (cluster start
included), lines per second, lines per second per worker, the driver's peak RSS (its own
``VmHWM``, without its children; Linux) and each worker's peak RSS (sampled every 0.2 s), then the
scaling from 1 to 2 workers and the projection of 100M lines.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .batch import projection
from .worklist import write_dataset

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "rules"
#: The driver: ``covreq batch`` with its own peak RSS (kB) printed as JSON on stdout at the end. The
#: peak is VmHWM, which starts anew at exec: ``ru_maxrss`` keeps the peak of the process before its
#: exec, a fork of this one, which holds the generated dataset.
_DRIVER = ("import json, re, sys\nfrom covreq.cli import main\ncode = main(sys.argv[1:])\n"
           "with open('/proc/self/status') as status:\n"
           "    peak = int(re.search(r'VmHWM:\\s+(\\d+) kB', status.read()).group(1))\n"
           "print(json.dumps({'code': code, 'rss_kb': peak}))")
#: Hours a 100M-line job is sized to finish in.
TARGET_HOURS = 2.0


def run_cluster(dataset: Path, target: Path, workers: int) -> dict[str, Any]:
    """One ``covreq batch`` of ``dataset`` on a local cluster of ``workers``: its figures."""
    import psutil

    command = [sys.executable, "-c", _DRIVER, "batch", "--rules", str(RULES), f"{dataset}/", "-o", f"{target}/",
               "--dask-workers", str(workers)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    peaks: dict[int, int] = {}
    began = time.perf_counter()
    # files, not pipes: the rejected rows fill a pipe's buffer long before the end, and the child would wait
    with tempfile.TemporaryFile("w+") as out_file, tempfile.TemporaryFile("w+") as err_file:
        with subprocess.Popen(command, stdout=out_file, stderr=err_file, text=True, env=env) as child:
            driver = psutil.Process(child.pid)
            while child.poll() is None:
                try:
                    for process in driver.children(recursive=True):
                        peaks[process.pid] = max(peaks.get(process.pid, 0), process.memory_info().rss)
                except psutil.Error:
                    pass  # a process ended between the listing and the reading
                time.sleep(0.2)
        seconds = time.perf_counter() - began
        out_file.seek(0)
        err_file.seek(0)
        out, err = out_file.read(), err_file.read()
    if child.returncode != 0 or not out.strip():
        raise RuntimeError(f"covreq batch on {workers} worker(s) failed ({child.returncode}): {err[-2000:]}")
    result = json.loads(out.strip().splitlines()[-1])
    lines = int(re.search(r"(\d+) service line\(s\)", err).group(1))  # type: ignore[union-attr]
    workers_mb = sorted((rss / 2**20 for rss in peaks.values()), reverse=True)[:workers]
    return {"workers": workers, "lines": lines, "seconds": seconds, "lps": lines / seconds,
            "lps_per_worker": lines / seconds / workers, "driver_rss_mb": result["rss_kb"] / 1024,
            "worker_rss_mb": workers_mb, "exit": result["code"]}


def sizing(lps_per_worker: float, core_hour_usd: float, hours: float = TARGET_HOURS) -> dict[str, float]:
    """Workers (one core each) to answer :data:`PROJECTED_LINES` in ``hours``, the worker-hours and the cost."""
    alone = projection(lps_per_worker, 1, core_hour_usd)
    return {"workers": math.ceil(alone["hours"] / hours), "worker_hours": alone["core_hours"], "usd": alone["usd"],
            "hours": hours}


def render(results: dict[str, Any]) -> str:
    """The results as a Markdown table, the scaling, and the projection."""
    rows = ["| workers | lines | seconds | lines/s | lines/s per worker | driver peak RSS MB | worker peak RSS MB |",
            "|---:|---:|---:|---:|---:|---:|---|"]
    for run in results["runs"]:
        rows.append(f"| {run['workers']} | {run['lines']:,} | {run['seconds']:.1f} | {run['lps']:,.0f} | "
                    f"{run['lps_per_worker']:,.0f} | {run['driver_rss_mb']:,.0f} | "
                    f"{', '.join(f'{mb:,.0f}' for mb in run['worker_rss_mb'])} |")
    size = results["sizing"]
    rows += ["", f"scaling, 1 -> 2 workers: {results['scaling']:.2f}x (target >= 1.6x)",
             f"100M lines at {results['sizing_lps']:,.0f} lines/s per worker: {size['worker_hours']:.1f} worker-hours, "
             f"{size['workers']} workers to finish in {size['hours']:g} h, ${size['usd']:.2f} at "
             f"${results['core_hour_usd']}/core-hour"]
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    """Write the dataset, run each cluster size, print the table."""
    parser = argparse.ArgumentParser(prog="python -m bench.batch_dataset", description=__doc__)
    parser.add_argument("--lines", type=int, default=600_000)
    parser.add_argument("--files", type=int, default=6)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--core-hour-usd", type=float, default=0.04,
                        help="price of one core for one hour (default: a typical on-demand vCPU)")
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    args = parser.parse_args(argv)
    results: dict[str, Any] = {"runs": [], "core_hour_usd": args.core_hour_usd}
    with tempfile.TemporaryDirectory(prefix="covreq-bench-dataset-") as tmp:
        dataset = Path(tmp) / "claims"
        print(f"writing a dataset of {args.lines:,} lines in {args.files} files ...", file=sys.stderr, flush=True)
        write_dataset(RULES, args.lines, dataset, args.files)
        for workers in args.workers:
            print(f"measuring {workers} worker(s) ...", file=sys.stderr, flush=True)
            results["runs"].append(run_cluster(dataset, Path(tmp) / f"answers-{workers}", workers))
            print(json.dumps(results["runs"][-1]), file=sys.stderr, flush=True)
    by = {run["workers"]: run for run in results["runs"]}
    results["scaling"] = by[2]["lps"] / by[1]["lps"] if 1 in by and 2 in by else 0.0
    best = by.get(2) or results["runs"][-1]
    results["sizing_lps"] = best["lps_per_worker"]
    results["sizing"] = sizing(best["lps_per_worker"], args.core_hour_usd)
    print(render(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
