"""covreq batch on Dask with a Parquet dataset in and out: the workers read, shuffle by order, answer
and write; the answers equal one process's row by row; an input declared partitioned by order is
checked; a failing partition is reported by number. One in-process LocalCluster for the module."""
from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any, Iterator

import pytest

import engine
from bench.worklist import write_worklist
from engine.worklists.batch import run
from covreq.cli import main

distributed = pytest.importorskip("distributed")
pytest.importorskip("pandas")
dask_batch = pytest.importorskip("dask_batch")
pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
pcsv = pytest.importorskip("pyarrow.csv")

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "rules"
LINES = 2_400
#: Where the worklist is cut into files: not on order boundaries, so orders straddle files.
CUTS = (0, 701, 1_499, 2_400)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    """Two workers of one thread in this process: the data still goes through Dask's shuffle and tasks."""
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as local, distributed.Client(local) as client:
        yield client


@pytest.fixture(scope="module")
def rules() -> engine.RuleSet:
    return engine.load(RULES)


def worklist_table(folder: Path, lines: int = LINES) -> Any:
    """The seeded benchmark worklist as an Arrow table of text columns."""
    source = folder / "worklist.csv"
    write_worklist(RULES, lines, source)
    names = pcsv.read_csv(source).column_names
    return pcsv.read_csv(source, convert_options=pcsv.ConvertOptions(column_types={n: pa.string() for n in names}))


def write_dataset(table: Any, folder: Path, cuts: tuple[int, ...] = CUTS) -> Path:
    folder.mkdir()
    for n, (start, end) in enumerate(zip(cuts, cuts[1:])):
        pq.write_table(table.slice(start, end - start), folder / f"claims-{n}.parquet")
    return folder


def answers(path: Path) -> list[dict[str, Any]]:
    """Every row of a Parquet answer (a file or a dataset folder), in input order."""
    return sorted(pq.read_table(path).to_pylist(), key=lambda r: (r["row"], r["line"]))


def test_a_dataset_answered_on_the_cluster_equals_one_process_row_by_row(
        cluster: Any, rules: engine.RuleSet, tmp_path: Path) -> None:
    table = worklist_table(tmp_path)
    ids = table.column("order_id").to_pylist()
    spaced = [f" {i}" if n % 7 == 0 else i for n, i in enumerate(ids)]  # " W1" is order W1, as in a CSV
    table = table.set_column(table.column_names.index("order_id"), "order_id", pa.array(spaced))
    files = [set(ids[a:b]) for a, b in zip(CUTS, CUTS[1:])]
    assert files[0] & files[1] and files[1] & files[2]  # some orders have rows in two files
    dataset = write_dataset(table, tmp_path / "claims")
    alone, spread = io.StringIO(), io.StringIO()
    single = run(rules, f"{dataset}/*.parquet", tmp_path / "single.parquet", alone)
    backend = dask_batch.DaskBackend(scheduler=cluster.scheduler.address)
    summary = run(rules, f"{dataset}/*.parquet", f"{tmp_path / 'answers'}/", spread, backend)
    parts = sorted(p.name for p in (tmp_path / "answers").iterdir())
    assert len(parts) > 3 and parts[0] == "part.00000.parquet"  # written by the workers, partition by partition
    got = answers(tmp_path / "answers")
    assert got == answers(tmp_path / "single.parquet")  # every column of every row
    keys = [(r["row"], r["line"]) for r in got]
    assert len(keys) == len(set(keys)) == single.lines  # every line answered once
    for part in parts:  # each part file's rows in input order
        rows = pq.read_table(tmp_path / "answers" / part).column("row").to_pylist()
        assert rows == sorted(rows)
    assert spread.getvalue() == alone.getvalue()  # the same rejections and summary
    assert "covreq batch: claims/*.parquet row " in alone.getvalue()  # rows numbered across the files
    summary.rejected.sort()
    single.rejected.sort()
    assert summary == single and single.rejected


def test_an_input_declared_partitioned_by_order_is_not_shuffled_and_a_split_order_is_rejected_not_answered(
        cluster: Any, rules: engine.RuleSet, tmp_path: Path) -> None:
    table = worklist_table(tmp_path, 600).sort_by("order_id")
    ids = table.column("order_id").to_pylist()
    cut = next(i for i in range(300, 600) if ids[i] == ids[i - 1])  # the middle of an order
    dataset = write_dataset(table, tmp_path / "claims", (0, cut, 600))
    split = ids[cut]
    spread = io.StringIO()
    backend = dask_batch.DaskBackend(scheduler=cluster.scheduler.address, partitioned_by_order=True)
    summary = run(rules, dataset, f"{tmp_path / 'answers'}/", spread, backend)
    assert sorted(p.name for p in (tmp_path / "answers").iterdir()) == ["part.00000.parquet", "part.00001.parquet"]
    got = answers(tmp_path / "answers")
    assert split not in {r["order_id"] for r in got}  # never answered, let alone twice
    rows = [n for n, order_id in enumerate(ids, start=1) if order_id == split]
    reason = ("order_id: the order's rows are in more than one file (claims-0.parquet, claims-1.parquet), though "
              "the input was declared partitioned by order; not answered")
    assert {r.row: r.reason for r in summary.rejected if r.row in rows} == {row: reason for row in rows}
    assert f"covreq batch: claims row {rows[0]}: {reason}; skipped" in spread.getvalue()
    run(rules, dataset, tmp_path / "single.parquet", io.StringIO())
    assert got == [r for r in answers(tmp_path / "single.parquet") if r["order_id"] != split]


def _runs_of_failed_tasks(dask_scheduler: Any) -> dict[str, int]:
    """On the scheduler: how many times each task that failed in its own code was started."""
    log = [(str(entry[0]), entry[1], entry[2]) for entry in dask_scheduler.transition_log]
    failed = {key for key, start, finish in log if (start, finish) == ("processing", "erred")}
    return {key: sum(1 for k, start, finish in log if k == key and (start, finish) == ("waiting", "processing"))
            for key in failed}


def _corrupt(path: Path) -> None:
    """Overwrite the first page header of a Parquet file: its footer stays readable, its rows do not."""
    data = bytearray(path.read_bytes())
    data[4:40] = b"\xff" * 36
    path.write_bytes(bytes(data))


def test_a_failing_partition_is_retried_then_reported_by_number_and_the_others_are_written(
        cluster: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    table = worklist_table(tmp_path, 600).drop_columns(["order_id"])  # each row an order: one partition a file
    dataset = write_dataset(table, tmp_path / "claims", (0, 200, 400, 600))
    _corrupt(dataset / "claims-1.parquet")
    code = main(["batch", "--rules", str(RULES), str(dataset), "-o", f"{tmp_path / 'answers'}/",
                 "--dask-scheduler", cluster.scheduler.address])
    err = capsys.readouterr().err
    assert code == 1, err
    assert re.search(r"covreq batch: partition 2 of 3 \(claims-1\.parquet\) failed after 2 retries: "
                     r"WorklistError at parquet\.py:\d+ \(piece_rows\): cannot read .*claims-1\.parquet", err)
    assert "1 partition(s) failed, their lines not written" in err and "Traceback" not in err
    runs = cluster.run_on_scheduler(_runs_of_failed_tasks)
    assert runs and set(runs.values()) == {3}  # the reading task ran three times: once, then the two retries
    written = {r["row"] for r in answers(tmp_path / "answers")}
    assert written and written <= set(range(1, 201)) | set(range(401, 601))
    assert written & set(range(1, 201)) and written & set(range(401, 601))


def test_csv_in_and_a_dataset_folder_out_on_the_cluster_as_one_process_writes_it(
        cluster: Any, rules: engine.RuleSet, tmp_path: Path) -> None:
    source = tmp_path / "worklist.csv"
    write_worklist(RULES, 300, source)
    run(rules, source, tmp_path / "single.parquet", io.StringIO())
    run(rules, source, f"{tmp_path / 'answers'}/", io.StringIO(),
        dask_batch.DaskBackend(scheduler=cluster.scheduler.address))
    assert [p.name for p in (tmp_path / "answers").iterdir()] == ["part.00000.parquet"]
    assert answers(tmp_path / "answers") == answers(tmp_path / "single.parquet")


def test_a_dataset_at_an_fsspec_url_is_read_and_written_by_the_workers(
        cluster: Any, rules: engine.RuleSet, tmp_path: Path) -> None:
    fsspec = pytest.importorskip("fsspec")
    memory = fsspec.filesystem("memory")  # shared by this process's workers, as s3:// is by a cluster's
    table = worklist_table(tmp_path, 400)
    for n, start in enumerate((0, 150)):
        with memory.open(f"/claims-url/part-{n}.parquet", "wb") as stream:
            pq.write_table(table.slice(start, 250 if n else 150), stream)
    try:
        run(rules, "memory://claims-url/", "memory://answers-url/", io.StringIO(),
            dask_batch.DaskBackend(scheduler=cluster.scheduler.address))
        run(rules, "memory://claims-url/", tmp_path / "single.parquet", io.StringIO())
        parts = memory.ls("/answers-url", detail=False)
        assert parts and all(p.rsplit("/", 1)[1].startswith("part.") for p in parts)
        got = []
        for part in parts:
            with memory.open(part, "rb") as stream:
                got += pq.read_table(stream).to_pylist()
        assert sorted(got, key=lambda r: (r["row"], r["line"])) == answers(tmp_path / "single.parquet")
    finally:
        memory.rm(["/claims-url", "/answers-url"], recursive=True)


def test_json_lines_in_and_out_on_the_cluster_as_one_process_writes_them(
        cluster: Any, rules: engine.RuleSet, tmp_path: Path) -> None:
    source = tmp_path / "orders.jsonl"
    source.write_text("\n".join(json.dumps(body) for body in [
        {"request_id": "J1", "payer": "medicare", "date_of_service": "2024-03-14", "place_of_service": "22",
         "services": [{"code": "64612"}, {"code": "J0585"}]},
        {"payer": "medicare", "date_of_service": "2024-03-14", "services": [{"code": "15823"}]},
        {"payer": "nobody", "services": [{"code": "15823"}]}]) + "\n")
    alone, spread = io.StringIO(), io.StringIO()
    run(rules, source, tmp_path / "one.jsonl", alone)
    run(rules, source, tmp_path / "many.jsonl", spread, dask_batch.DaskBackend(scheduler=cluster.scheduler.address))
    assert (tmp_path / "many.jsonl").read_text() == (tmp_path / "one.jsonl").read_text()
    assert spread.getvalue() == alone.getvalue() and "orders.jsonl row 3: payer: unknown payer" in alone.getvalue()
    assert len((tmp_path / "one.jsonl").read_text().splitlines()) == 3


def test_an_output_folder_holding_files_is_refused_before_anything_runs(
        cluster: Any, rules: engine.RuleSet, tmp_path: Path) -> None:
    dataset = write_dataset(worklist_table(tmp_path, 50), tmp_path / "claims", (0, 50))
    (tmp_path / "answers").mkdir()
    (tmp_path / "answers" / "part.00007.parquet").write_bytes(b"old")
    with pytest.raises(engine.worklists.worklist.WorklistError, match="the output folder must be new or empty"):
        run(rules, dataset, f"{tmp_path / 'answers'}/", io.StringIO(),
            dask_batch.DaskBackend(scheduler=cluster.scheduler.address))


def test_the_documented_dataset_commands_run(cluster: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    page = (ROOT / "docs" / "lookup.md").read_text(encoding="utf-8")
    block = re.search(r"<!-- example: dask-dataset -->\n```sh\n(.*?)```", page, re.S).group(1)  # type: ignore[union-attr]
    commands = [line.split()[1:] for line in block.splitlines() if line.startswith("covreq batch")]
    assert [c[c.index("--dask-workers") + 1] if "--dask-workers" in c else c[c.index("--dask-scheduler") + 1]
            for c in commands] == ["2", "tls://dask-scheduler:8786"]
    write_dataset(worklist_table(tmp_path, 200), tmp_path / "claims-2025", (0, 120, 200))
    alone = main(["batch", "--rules", str(RULES), str(tmp_path / "claims-2025"), "-o", str(tmp_path / "one.parquet")])
    expected = capsys.readouterr().err
    remote = commands[1]
    for at in sorted((remote.index(o) for o in remote if o.startswith("--dask-tls")), reverse=True):
        del remote[at:at + 2]  # the test cluster speaks tcp, in this process
    remote[remote.index("--dask-scheduler") + 1] = cluster.scheduler.address
    substitutes = {"rules/": str(RULES), "claims-2025/": f"{tmp_path / 'claims-2025'}/",
                   "answers-2025/": f"{tmp_path / 'answers-2025'}/"}
    assert main([substitutes.get(word, word) for word in remote]) == alone
    assert capsys.readouterr().err == expected
    assert answers(tmp_path / "answers-2025") == answers(tmp_path / "one.parquet")
