"""Smoke test of the batch benchmark: the worklist generator and the harness at a tiny size.

It checks that results are well formed, never how fast anything is.
"""
from __future__ import annotations

import csv
from pathlib import Path

import pytest

import engine
from bench.batch import PROJECTED_LINES, measure, projection, render
from bench.batch_dataset import render as render_dataset, sizing
from bench.worklist import BAD_ROW_EVERY, write_dataset, write_worklist
from engine.worklists.batch import answer_orders

RULES = Path(__file__).resolve().parent.parent / "rules"


def test_the_worklist_is_seeded_spreads_orders_and_carries_bad_rows(tmp_path: Path) -> None:
    orders = write_worklist(RULES, 1_200, tmp_path / "a.csv")
    write_worklist(RULES, 1_200, tmp_path / "b.csv")
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()
    rows = list(csv.DictReader((tmp_path / "a.csv").open(encoding="utf-8")))
    assert len(rows) == 1_200 and len({r["order_id"] for r in rows}) == orders
    positions: dict[str, list[int]] = {}
    for number, row in enumerate(rows):
        positions.setdefault(row["order_id"], []).append(number)
    assert any(p[-1] - p[0] >= len(p) for p in positions.values())  # some orders' rows are not adjacent
    known = set(engine.load(RULES).payers())
    assert {r["payer"] for r in rows} <= known


def test_the_harness_measures_the_whole_command_and_projects_the_cost(tmp_path: Path) -> None:
    write_worklist(RULES, 1_000, tmp_path / "worklist.csv")
    figures = measure(engine.load(RULES), tmp_path / "worklist.csv", tmp_path / "out.csv", answer_orders, 2)
    assert 1_000 - 3 * (1_000 // BAD_ROW_EVERY) <= figures["lines"] < 1_000
    assert figures["min_lps"] <= figures["median_lps"] <= figures["max_lps"] < figures["answer_median_lps"]
    cost = projection(10_000.0, 2, 0.05)
    assert cost["hours"] == PROJECTED_LINES / 10_000 / 3600 and cost["usd"] == cost["hours"] * 2 * 0.05
    table = render({"runs": {"one process": figures}, "scaling": 1.5, "answer_scaling": 1.8, "driver_rss_mb": 100,
                    "projection": cost, "core_hour_usd": 0.05})
    assert "| one process | " in table and "1.50x whole command, 1.80x answer phase" in table and "core-hours" in table


def test_the_dataset_is_the_worklist_in_files_and_the_bench_sizes_a_cluster(tmp_path: Path) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    write_worklist(RULES, 900, tmp_path / "worklist.csv")
    orders = write_dataset(RULES, 900, tmp_path / "claims", files=4)
    files = sorted((tmp_path / "claims").iterdir())
    assert [f.name for f in files] == [f"claims-0{n}.parquet" for n in range(4)]
    rows = [row for f in files for row in pq.read_table(f).to_pylist()]
    assert rows == list(csv.DictReader((tmp_path / "worklist.csv").open(encoding="utf-8")))
    assert len({r["order_id"] for r in rows}) == orders
    size = sizing(5_000.0, 0.05, hours=2.0)
    assert size["worker_hours"] == PROJECTED_LINES / 5_000 / 3600 and size["workers"] == 3
    assert size["usd"] == size["worker_hours"] * 0.05
    run = {"workers": 2, "lines": 900, "seconds": 1.5, "lps": 600.0, "lps_per_worker": 300.0, "driver_rss_mb": 150.0,
           "worker_rss_mb": [250.0, 240.0]}
    table = render_dataset({"runs": [dict(run, workers=1, lps=400.0), run], "scaling": 1.5, "sizing": size,
                            "sizing_lps": 300.0, "core_hour_usd": 0.05})
    assert "| 2 | 900 | 1.5 | 600 | 300 | 150 | 250, 240 |" in table and "1.50x (target >= 1.6x)" in table
    assert "3 workers to finish in 2 h" in table
