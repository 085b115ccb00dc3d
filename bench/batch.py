"""Batch throughput: ``covreq batch`` on one process and on local Dask clusters, and the cost of 100M lines.

``.venv/bin/python -m bench.batch`` generates a worklist (1M service lines by default) over the bundled
rules, answers it in this process and on local Dask clusters of 1 and 2 workers, and prints lines per
second (median of the rounds, the whole command: read, answer, write, cluster start included), the
scaling ratio from 1 to 2 workers, and the projected time and cost of 100M lines.
"""
from __future__ import annotations

import argparse
import io
import json
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import engine
from engine.worklists.batch import Backend, answer_orders, run

from .worklist import write_worklist

RULES = Path(__file__).resolve().parent.parent / "rules"
#: Lines the cost is projected for.
PROJECTED_LINES = 100_000_000


def measure(rules: engine.RuleSet, worklist: Path, target: Path, backend: Backend, rounds: int) -> dict[str, Any]:
    """Lines per second over ``rounds`` runs of the whole batch (median, min, max), and of its answer
    phase alone (the back-end's part: without reading, sorting and writing, which stay in this process)."""
    rates, answer_rates, lines = [], [], 0
    for _ in range(rounds):
        rules.clear_caches()
        answering: list[float] = []

        def timed(*args: Any) -> Any:
            began = time.perf_counter()
            try:
                return backend(*args)
            finally:
                answering.append(time.perf_counter() - began)
        began = time.perf_counter()
        summary = run(rules, worklist, target, io.StringIO(), timed)
        seconds = time.perf_counter() - began
        lines = summary.lines
        rates.append(lines / seconds)
        answer_rates.append(lines / answering[0])
    return {"lines": lines, "rounds": rounds, "median_lps": statistics.median(rates), "min_lps": min(rates),
            "max_lps": max(rates), "answer_median_lps": statistics.median(answer_rates)}


def projection(lines_per_second: float, cores: int, core_hour_usd: float) -> dict[str, float]:
    """Hours and cost of :data:`PROJECTED_LINES` at a measured rate on ``cores`` cores."""
    hours = PROJECTED_LINES / lines_per_second / 3600
    return {"hours": hours, "core_hours": hours * cores, "usd": hours * cores * core_hour_usd}


def render(results: dict[str, Any]) -> str:
    """The results as a Markdown table with the scaling ratio and the projection."""
    rows = ["| back-end | lines | median lines/s | min | max | answer phase, median lines/s |",
            "|---|---|---|---|---|---|"]
    for name, figures in results["runs"].items():
        rows.append(f"| {name} | {figures['lines']:,} | {figures['median_lps']:,.0f} | {figures['min_lps']:,.0f} "
                    f"| {figures['max_lps']:,.0f} | {figures['answer_median_lps']:,.0f} |")
    p = results["projection"]
    rows += ["", f"scaling, 1 -> 2 Dask workers: {results['scaling']:.2f}x whole command, "
                 f"{results['answer_scaling']:.2f}x answer phase (2 cores)",
             f"peak memory of the driver: {results['driver_rss_mb']:,.0f} MB",
             f"100M lines on 2 workers: {p['hours']:.1f} h, {p['core_hours']:.1f} core-hours, "
             f"${p['usd']:.2f} at ${results['core_hour_usd']}/core-hour"]
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    """Generate the worklist, measure each back-end, print the table."""
    parser = argparse.ArgumentParser(prog="python -m bench.batch", description=__doc__)
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--core-hour-usd", type=float, default=0.04,
                        help="price of one core for one hour (default: a typical on-demand vCPU)")
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    args = parser.parse_args(argv)
    from dask_batch import DaskBackend

    rules = engine.load(RULES)
    results: dict[str, Any] = {"runs": {}, "core_hour_usd": args.core_hour_usd}
    with tempfile.TemporaryDirectory(prefix="covreq-bench-batch-") as tmp:
        worklist = Path(tmp) / "worklist.csv"
        print(f"writing a worklist of {args.lines:,} lines ...", file=sys.stderr, flush=True)
        write_worklist(RULES, args.lines, worklist)
        backends: dict[str, Backend] = {"one process": answer_orders}
        backends.update({f"Dask, {n} worker(s)": DaskBackend(workers=n) for n in args.workers})
        for name, backend in backends.items():
            print(f"measuring {name} ...", file=sys.stderr, flush=True)
            results["runs"][name] = measure(rules, worklist, Path(tmp) / "out.csv", backend, args.rounds)
            print(json.dumps({name: results["runs"][name]}), file=sys.stderr, flush=True)
    one, two = (results["runs"].get(f"Dask, {n} worker(s)", {}) for n in (1, 2))
    results["scaling"] = two["median_lps"] / one["median_lps"] if one and two else 0.0
    results["answer_scaling"] = two["answer_median_lps"] / one["answer_median_lps"] if one and two else 0.0
    results["driver_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    results["projection"] = projection((two or results["runs"]["one process"])["median_lps"], 2, args.core_hour_usd)
    table = render(results)
    print(table)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
