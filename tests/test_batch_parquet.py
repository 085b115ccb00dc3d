"""Parquet worklists: typed columns in, the CSV answer's columns out, errors as for CSV."""
from __future__ import annotations

import csv
import datetime as dt
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings, strategies as st

from engine.worklists.batch import OUTPUT_COLUMNS
from covreq.cli import main
from engine.worklists.parquet import cell, filesystem, plan, read_parquet
from engine.worklists.parquet import piece_rows as piece_rows_of
from engine.worklists.worklist import WorklistError

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "rules"
ORDERS = ROOT / "docs" / "examples" / "orders.csv"


def _batch(source: Path | str, target: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["batch", "--rules", str(RULES), str(source), "-o", str(target)])
    return code, capsys.readouterr().err


def test_parquet_output_has_the_csv_columns_and_values(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code_csv, err_csv = _batch(ORDERS, tmp_path / "out.csv", capsys)
    code_parquet, err_parquet = _batch(ORDERS, tmp_path / "out.parquet", capsys)
    assert (code_parquet, err_parquet) == (code_csv, err_csv)
    table = pq.read_table(tmp_path / "out.parquet")
    assert tuple(table.column_names) == OUTPUT_COLUMNS
    assert table.schema.field("row").type == pa.int64() and table.schema.field("reasons").type == pa.string()
    from_csv = list(csv.DictReader((tmp_path / "out.csv").open(encoding="utf-8")))
    from_parquet = [{k: str(v) for k, v in row.items()} for row in table.to_pylist()]
    assert from_parquet == from_csv


def test_typed_parquet_input_answers_as_the_same_orders_written_as_csv(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    orders = tmp_path / "orders.parquet"
    pq.write_table(pa.table({
        "Order_ID": ["B1", "B1", "B2", "B3"],
        "payer": ["medicare"] * 4,
        "date_of_service": pa.array([dt.date(2024, 3, 11)] * 3 + [None], pa.date32()),
        "place_of_service": pa.array([22, 22, 11, 22], pa.int32()),  # a number: 11, not "11"
        "diagnoses": pa.array([["H02.831", "H53.40"], None, None, []], pa.list_(pa.string())),
        "code": ["15823", "67904", "64612", "15823"],
        "units": pa.array([1.0, 1.0, 2.0, None], pa.float64()),
        "patient_name": ["Ann", "Ann", "Bob", "Cy"],
    }), orders)
    as_csv = tmp_path / "orders.csv"
    as_csv.write_text("order_id,payer,date_of_service,place_of_service,diagnoses,code,units\n"
                      "B1,medicare,2024-03-11,22,H02.831;H53.40,15823,1\n"
                      "B1,medicare,2024-03-11,22,,67904,1\n"
                      "B2,medicare,2024-03-11,11,,64612,2\n"
                      "B3,medicare,,22,,15823,\n")
    code, err = _batch(orders, tmp_path / "from-parquet.csv", capsys)
    assert code == 0 and "ignoring unknown column(s) patient_name" in err and "Ann" not in err
    _batch(as_csv, tmp_path / "from-csv.csv", capsys)
    parquet_rows = list(csv.DictReader((tmp_path / "from-parquet.csv").open(encoding="utf-8")))
    csv_rows = list(csv.DictReader((tmp_path / "from-csv.csv").open(encoding="utf-8")))
    # Parquet rows are numbered from 1 (no header row), CSV rows from 2
    assert [r["row"] for r in parquet_rows] == ["1", "2", "3", "4"]
    assert [{k: v for k, v in r.items() if k != "row"} for r in parquet_rows] == \
           [{k: v for k, v in r.items() if k != "row"} for r in csv_rows]


def test_a_bad_parquet_row_is_reported_by_its_number_and_rejects_its_order(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    orders = tmp_path / "orders.parquet"
    pq.write_table(pa.table({"order_id": ["C1", "C1", "C2"], "payer": ["medicare"] * 3,
                             "date_of_service": ["2024-03-11"] * 3, "code": ["15823", "2255", "15823"]}), orders)
    code, err = _batch(orders, tmp_path / "out.parquet", capsys)
    assert code == 1
    assert "orders.parquet row 2: code: '2255' is not a CPT or HCPCS Level II code; skipped" in err
    assert "orders.parquet row 1: its order was rejected with row 2; skipped" in err
    assert pq.read_table(tmp_path / "out.parquet").column("row").to_pylist() == [3]


def test_a_file_that_is_not_parquet_or_lacks_a_column_is_refused_and_nothing_is_written(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bogus = tmp_path / "orders.parquet"
    bogus.write_text("order_id,payer,code\n")
    code, err = _batch(bogus, tmp_path / "out.csv", capsys)
    assert code == 2 and f"cannot read {bogus}" in err and not (tmp_path / "out.csv").exists()
    pq.write_table(pa.table({"order_id": ["D1"], "code": ["15823"]}), bogus)
    code, err = _batch(bogus, tmp_path / "out.csv", capsys)
    assert code == 2 and "missing column(s) payer" in err


def test_without_pyarrow_the_message_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    with pytest.raises(WorklistError, match=r"pip install 'covreq\[parquet\]'"):
        read_parquet(tmp_path / "orders.parquet")


@pytest.mark.parametrize(("value", "text"), [
    (None, ""), ("22", "22"), (22, "22"), (1.0, "1"), (1.5, "1.5"), (True, "true"),
    (dt.date(2024, 3, 11), "2024-03-11"), (dt.datetime(2024, 3, 11, 9, 30), "2024-03-11"),
    (["H02.831", "H53.40"], "H02.831;H53.40"), ([], ""),
])
def test_typed_values_become_the_cells_a_csv_would_hold(value: object, text: str) -> None:
    assert cell(value) == text


# Issue 24, item 15: a small file whose cells decompress to far more ---------------------------------

def _bomb(path: Path, size: int) -> None:
    """One row whose code cell is ``size`` bytes, zstd-compressed to a few hundred."""
    pq.write_table(pa.table({"order_id": ["B"], "payer": ["medicare"], "code": ["9" * size]}), path,
                   compression="zstd")


def test_regression_a_column_chunk_too_large_is_refused_before_anything_is_read(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    import engine.worklists.parquet

    monkeypatch.setattr(engine.worklists.parquet, "MAX_CHUNK_BYTES", 1_000_000)  # the red team's cell: 300 MB; here 2 MB
    monkeypatch.setattr(pq.ParquetFile, "iter_batches", lambda *a, **k: pytest.fail("read before the check"))
    source = tmp_path / "orders.parquet"
    _bomb(source, 2_000_000)
    assert source.stat().st_size < 20_000
    code, err = _batch(source, tmp_path / "out.csv", capsys)
    assert code == 2 and not (tmp_path / "out.csv").exists()
    assert "orders.parquet: rows 1-1 (row group 1), column code: 2000" in err
    assert "more than the limit of 1000000 bytes" in err


def test_a_parquet_cell_past_the_cell_limit_is_refused_with_its_row(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "orders.parquet"
    _bomb(source, 200_000)
    code, err = _batch(source, tmp_path / "out.csv", capsys)
    assert code == 2 and not (tmp_path / "out.csv").exists()
    assert "orders.parquet: row 1, column code: a cell is longer than the limit of 131072 characters" in err


# Datasets: a folder or a glob of files, rows numbered across them ----------------------------------

def _claims(folder: Path, files: dict[str, list[tuple[str, str]]]) -> Path:
    """Parquet files of (order_id, code) rows, for medicare on one day at POS 22."""
    for name, rows in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table({"order_id": [o for o, _ in rows], "payer": ["medicare"] * len(rows),
                                 "date_of_service": ["2024-03-11"] * len(rows), "place_of_service": ["22"] * len(rows),
                                 "code": [c for _, c in rows]}), folder / name)
    return folder


def test_a_folder_is_one_worklist_numbered_across_its_files_in_path_order(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # an order's rows in two files meet; a nested file is found; the files are taken by path
    dataset = _claims(tmp_path / "claims", {"b.parquet": [("A", "64612")], "a.parquet": [("B", "15823"), ("A", "J0585")],
                                           "c/d.parquet": [("C", "2255")]})
    (dataset / "notes.txt").write_text("not Parquet")
    code, err = _batch(dataset, tmp_path / "out.csv", capsys)
    rows = list(csv.DictReader((tmp_path / "out.csv").open(encoding="utf-8")))
    assert code == 1 and "claims row 4: code: '2255' is not a CPT or HCPCS Level II code; skipped" in err
    assert [(r["row"], r["order_id"], r["line"], r["code"], r["pa_needed"]) for r in rows] == [
        ("1", "B", "1", "15823", "auth-needed"), ("2", "A", "1", "J0585", "auth-needed"),
        ("3", "A", "2", "64612", "auth-needed")]  # the pair needs PA: both lines were one order
    code, err_glob = _batch(Path(f"{dataset}/*.parquet"), tmp_path / "glob.csv", capsys)  # c/d.parquet not matched
    assert code == 0 and len(list(csv.DictReader((tmp_path / "glob.csv").open(encoding="utf-8")))) == 3


def test_an_output_folder_gets_one_part_file_from_one_process(tmp_path: Path) -> None:
    dataset = _claims(tmp_path / "claims", {"a.parquet": [("B", "15823")]})
    assert main(["batch", "--rules", str(RULES), str(dataset), "-o", f"{tmp_path / 'answers'}/"]) == 0
    assert [p.name for p in (tmp_path / "answers").iterdir()] == ["part.00000.parquet"]
    assert pq.read_table(tmp_path / "answers").column("pa_needed").to_pylist() == ["auth-needed"]


@pytest.mark.parametrize(("make", "message"), [
    (lambda d: None, "claims: no Parquet file found there"),
    (lambda d: "nosuch://bucket/claims/", "cannot open nosuch://bucket/claims/: Protocol not known: nosuch"),
    (lambda d: pq.write_table(pa.table({"payer": ["x"], "code": ["1"]}), d / "a.parquet") or pq.write_table(
        pa.table({"code": ["1"], "payer": ["x"]}), d / "b.parquet"), "b.parquet: its columns (code, payer) are not those of"),
])
def test_a_dataset_that_cannot_be_used_is_refused_and_nothing_written(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], make: Any, message: str) -> None:
    (tmp_path / "claims").mkdir()
    source = make(tmp_path / "claims") or tmp_path / "claims"  # a URL, or the folder made
    code, err = _batch(source, tmp_path / "out.csv", capsys)
    assert code == 2 and message in err and not (tmp_path / "out.csv").exists()


def test_partitioned_by_order_without_dask_and_an_unknown_output_name_are_usage_errors(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dataset = _claims(tmp_path / "claims", {"a.parquet": [("B", "15823")]})
    assert main(["batch", "--rules", str(RULES), str(dataset), "-o", str(tmp_path / "o.csv"), "--partitioned-by-order"]) == 2
    assert "--partitioned-by-order goes with --dask-workers or --dask-scheduler" in capsys.readouterr().err
    assert main(["batch", "--rules", str(RULES), str(dataset), "-o", str(tmp_path / "answers")]) == 2
    assert "unknown format" in capsys.readouterr().err and not (tmp_path / "answers").exists()


@settings(max_examples=25, deadline=None)
@given(files=st.lists(st.lists(st.integers(1, 30), min_size=1, max_size=5), min_size=1, max_size=4),
       piece_rows=st.integers(1, 60))
def test_a_datasets_pieces_are_whole_row_groups_numbering_every_row_once_in_order(
        tmp_path_factory: pytest.TempPathFactory, files: list[list[int]], piece_rows: int) -> None:
    folder = tmp_path_factory.mktemp("pieces")
    for n, groups in enumerate(files):
        with pq.ParquetWriter(folder / f"f{n}.parquet", pa.schema([("payer", pa.string()), ("code", pa.string())])) as out:
            for size in groups:
                out.write_table(pa.table({"payer": ["p"] * size, "code": [f"{n}"] * size}), row_group_size=size)
    columns, pieces = plan(str(folder), piece_rows)
    assert columns == ["payer", "code"]
    assert [p.first for p in pieces] == [1 + sum(p.rows for p in pieces[:i]) for i in range(len(pieces))]
    for n, groups in enumerate(files):  # each file's groups, in order, in pieces of at least piece_rows but the last
        mine = [p for p in pieces if p.path.endswith(f"f{n}.parquet")]
        assert [g for p in mine for g in p.groups] == list(range(len(groups)))
        assert [p.rows for p in mine] == [sum(groups[g] for g in p.groups) for p in mine]
        assert all(p.rows >= piece_rows for p in mine[:-1]) and all(p.rows - groups[p.groups[-1]] < piece_rows for p in mine)
    fs, _ = filesystem(str(folder))
    numbered = [number for p in pieces for number, _ in piece_rows_of(fs, p)]
    assert numbered == list(range(1, sum(map(sum, files)) + 1))
