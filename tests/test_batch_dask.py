"""covreq batch on Dask: a LocalCluster of two workers answers a generated worklist line for line as
one process does, each worker loading the rule set once; orders are never split across partitions."""
from __future__ import annotations

import csv
import io
import pickle
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Iterator

import pytest
from hypothesis import given, settings, strategies as st

import engine
from bench.worklist import BAD_ROW_EVERY, write_worklist
from engine.worklists.batch import run
from covreq.cli import build_parser, main
from engine.worklists.worklist import Order, WorklistError

distributed = pytest.importorskip("distributed")
dask_batch = pytest.importorskip("dask_batch")

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "rules"
EXAMPLES = ROOT / "docs" / "examples"
LINES = 3_000


@pytest.fixture(scope="module")
def cluster() -> Iterator[distributed.Client]:
    """A local cluster of two worker processes, one thread each (the machine has two cores)."""
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=":0") as local, distributed.Client(local) as client:
        yield client


@pytest.fixture(scope="module")
def rules() -> engine.RuleSet:
    return engine.load(RULES)


def rows(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(path.open(encoding="utf-8")))


def test_two_workers_answer_every_line_once_as_one_process_does(cluster: distributed.Client, rules: engine.RuleSet,
                                                                tmp_path: Path) -> None:
    worklist = tmp_path / "worklist.csv"
    orders = write_worklist(RULES, LINES, worklist)
    alone, spread = io.StringIO(), io.StringIO()
    single = run(rules, worklist, tmp_path / "single.csv", alone)
    backend = dask_batch.DaskBackend(scheduler=cluster.scheduler.address, partition_lines=250)
    distributed_summary = run(rules, worklist, tmp_path / "dask.csv", spread, backend)
    answered = rows(tmp_path / "dask.csv")
    keys = [(r["row"], r["line"]) for r in answered]
    rejected = {r.row for r in single.rejected}
    assert len(keys) == len(set(keys)) == LINES - len(rejected)  # every line answered once
    assert {int(r["row"]) for r in answered} | rejected == set(range(2, LINES + 2))
    assert answered == rows(tmp_path / "single.csv")  # same columns, order and answers
    assert spread.getvalue() == alone.getvalue()  # rejections and summary as one process reports them
    distributed_summary.rejected.sort()
    single.rejected.sort()
    assert distributed_summary == single and single.orders < orders and len(rejected) >= LINES // BAD_ROW_EVERY
    loads = cluster.run(lambda: __import__("dask_batch.backend").backend.loads)
    assert sorted(loads.values()) == [1, 1]  # twelve partitions, and each worker loaded the rules once


def test_the_cli_on_a_scheduler_writes_what_one_process_writes(cluster: distributed.Client, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    orders = EXAMPLES / "orders.csv"
    assert main(["batch", "--rules", str(RULES), str(orders), "-o", str(tmp_path / "one.jsonl")]) == 1
    alone = capsys.readouterr().err
    assert main(["batch", "--rules", str(RULES), str(orders), "-o", str(tmp_path / "many.jsonl"),
                 "--dask-scheduler", cluster.scheduler.address]) == 1
    assert capsys.readouterr().err == alone
    assert (tmp_path / "many.jsonl").read_text() == (tmp_path / "one.jsonl").read_text()


def test_the_cli_starts_a_local_cluster_of_the_workers_asked_for(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    orders = EXAMPLES / "orders.csv"
    assert main(["batch", "--rules", str(RULES), str(orders), "-o", str(tmp_path / "out.csv"),
                 "--dask-workers", "1"]) == 1
    assert "11 service line(s) in 9 order(s) answered" in capsys.readouterr().err
    strip = [{k: v for k, v in r.items() if k != "ruleset"} for r in rows(tmp_path / "out.csv")]
    assert strip == [{k: v for k, v in r.items() if k != "ruleset"} for r in rows(EXAMPLES / "orders.out.csv")]


def test_an_unreachable_scheduler_is_a_worklist_error_naming_it(rules: engine.RuleSet, tmp_path: Path) -> None:
    backend = dask_batch.DaskBackend(scheduler="tcp://127.0.0.1:9", connect_seconds=1)
    with pytest.raises(WorklistError, match="cannot reach the Dask scheduler at tcp://127.0.0.1:9"):
        run(rules, EXAMPLES / "orders.csv", tmp_path / "out.csv", io.StringIO(), backend)
    assert not (tmp_path / "out.csv").exists()


def test_without_dask_the_cli_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    for name in [m for m in sys.modules if m == "dask_batch" or m.startswith(("dask_batch.", "distributed"))]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "distributed", None)
    code = main(["batch", "--rules", str(RULES), str(EXAMPLES / "orders.csv"), "-o", str(tmp_path / "out.csv"),
                 "--dask-workers", "2"])
    assert code == 2 and "pip install 'covreq[dask]'" in capsys.readouterr().err
    assert not (tmp_path / "out.csv").exists()


@settings(max_examples=60, deadline=None)
@given(sizes=st.lists(st.integers(1, 40), max_size=60), lines=st.integers(1, 100))
def test_partitions_keep_orders_whole_in_input_order(sizes: list[int], lines: int) -> None:
    orders = [Order(f"o{n}", {}, list(range(size))) for n, size in enumerate(sizes)]
    groups = dask_batch.partitions(orders, lines)
    assert [o for group in groups for o in group] == orders  # each order once, whole, in order
    for group in groups:
        assert group and sum(len(o.rows) for o in group[:-1]) < lines  # only its last order may overflow it


@pytest.mark.parametrize("workers", ["0", "-1", "two"])
def test_a_number_of_workers_below_one_is_refused_as_usage(workers: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        build_parser().parse_args(["batch", "--rules", "rules/", "o.csv", "-o", "a.csv", "--dask-workers", workers])
    assert stop.value.code == 2 and "at least 1" in capsys.readouterr().err


def test_the_engine_and_the_cli_import_no_dask() -> None:
    code = ("import sys, engine, engine.worklists.batch, covreq.cli, engine.worklists.parquet; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed', 'dask_batch')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert result.stdout.strip() == "[]"


def test_the_documented_dask_commands_parse_and_the_extra_exists() -> None:
    page = (ROOT / "docs" / "lookup.md").read_text(encoding="utf-8")
    block = re.search(r"<!-- example: dask -->\n```sh\n(.*?)```", page, re.S).group(1)  # type: ignore[union-attr]
    assert "pip install 'covreq[dask]'" in block
    commands = [line.split()[1:] for line in block.splitlines() if line.startswith("covreq batch")]
    parsed = [build_parser().parse_args(command) for command in commands]
    assert [(a.dask_workers, a.dask_scheduler is not None) for a in parsed] == [(2, False), (None, True)]
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(d.startswith("dask[distributed,dataframe]") for d in extras["dask"]) and any(
        d.startswith("pyarrow") for d in extras["dask"])


# Issue 24, item 11: a hostile scheduler or worker; TLS ----------------------------------------------

class _Runs:
    """Runs code when unpickled: what a hostile worker would send back."""

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return exec, ("import builtins; builtins.COVREQ_HOSTILE = True",)


def _hostile(result: object) -> None:
    """On a worker: answer every partition with ``result`` (restored by ``_hostile(None)``)."""
    import dask_batch.backend as backend

    real = vars(backend).setdefault("_real_encode", vars(backend).get("encode"))
    if result is None:
        backend.encode = real
    else:
        backend.encode = lambda *_: result


def test_regression_a_partition_comes_back_as_bytes_that_only_data_can_be_read_from(
        rules: engine.RuleSet, tmp_path: Path) -> None:
    from engine.worklists.batch import _csv_row
    from engine.loading.bundle import build

    orders = [Order("A", {"payer": "medicare", "date_of_service": "2024-03-14", "services": [{"code": "15823"}]}, [2]),
              Order("B", {"payer": "nobody", "services": [{"code": "15823"}]}, [3])]
    result = dask_batch.backend.answer_partition(build(RULES)[0], rules.digest, dask_batch.backend.pack(orders),
                                                 _csv_row)
    assert isinstance(result, bytes)  # was a tuple holding a Summary: pickled, so the driver unpickled it
    lines, summary = dask_batch.backend.decode(result)
    assert [(row, line, record[1]) for row, line, record in lines] == [(2, 1, "A")]
    assert (summary.orders, summary.lines, [r.row for r in summary.rejected]) == (1, 1, [3])


@pytest.mark.parametrize("result", [pickle.dumps(_Runs()), {"lines": []}, b"\x93\x01\x02\x03"])
def test_a_worker_answering_anything_but_covreqs_bytes_is_refused_unread(
        cluster: distributed.Client, rules: engine.RuleSet, tmp_path: Path, result: object) -> None:
    import builtins

    cluster.run(_hostile, result)
    try:
        backend = dask_batch.DaskBackend(scheduler=cluster.scheduler.address)
        with pytest.raises(WorklistError, match="a Dask worker answered with"):
            run(rules, EXAMPLES / "orders.csv", tmp_path / "out.csv", io.StringIO(), backend)
    finally:
        cluster.run(_hostile, None)
    assert not hasattr(builtins, "COVREQ_HOSTILE") and not (tmp_path / "out.csv").exists()


@pytest.fixture(scope="module")
def tls_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, list[str]]]:
    """A local cluster that speaks only TLS, with its CA, certificate and key written as PEM files."""
    security = distributed.Security.temporary()
    folder = tmp_path_factory.mktemp("tls")
    files = []
    for name, pem in (("ca.pem", security.tls_ca_file), ("cert.pem", security.tls_client_cert),
                      ("key.pem", security.tls_client_key)):
        (folder / name).write_text(pem)
        files.append(str(folder / name))
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0",
                                  security=security) as local:
        yield local.scheduler_address, files


def test_the_cli_answers_on_a_tls_cluster_with_its_certificates(tls_cluster: tuple[str, list[str]], tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    address, (ca, cert, key) = tls_cluster
    assert address.startswith("tls://")
    orders = EXAMPLES / "orders.csv"
    assert main(["batch", "--rules", str(RULES), str(orders), "-o", str(tmp_path / "one.csv")]) == 1
    alone = capsys.readouterr().err
    assert main(["batch", "--rules", str(RULES), str(orders), "-o", str(tmp_path / "tls.csv"), "--dask-scheduler", address,
                 "--dask-tls-ca-file", ca, "--dask-tls-cert", cert, "--dask-tls-key", key]) == 1
    assert capsys.readouterr().err == alone
    assert rows(tmp_path / "tls.csv") == rows(tmp_path / "one.csv")


def test_a_tls_cluster_without_certificates_is_not_reached(tls_cluster: tuple[str, list[str]], rules: engine.RuleSet,
                                                           tmp_path: Path) -> None:
    backend = dask_batch.DaskBackend(scheduler=tls_cluster[0], connect_seconds=2)
    with pytest.raises(WorklistError, match="cannot reach the Dask scheduler at tls://"):
        run(rules, EXAMPLES / "orders.csv", tmp_path / "out.csv", io.StringIO(), backend)


@pytest.mark.parametrize("options", [
    ["--dask-scheduler", "tcp://127.0.0.1:9", "--dask-tls-ca-file", "ca.pem", "--dask-tls-cert", "c.pem"],
    ["--dask-scheduler", "tls://127.0.0.1:9", "--dask-tls-cert", "c.pem"],
    ["--dask-workers", "1", "--dask-tls-ca-file", "ca.pem", "--dask-tls-cert", "c.pem"],
    ["--dask-scheduler", "tls://127.0.0.1:9", "--dask-tls-ca-file", "missing.pem", "--dask-tls-cert", "c.pem"],
])
def test_tls_options_that_cannot_work_are_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                       options: list[str]) -> None:
    code = main(["batch", "--rules", str(RULES), str(EXAMPLES / "orders.csv"), "-o", str(tmp_path / "out.csv"), *options])
    err = capsys.readouterr().err
    assert code == 2 and not (tmp_path / "out.csv").exists()
    assert "tls" in err.lower() and "Traceback" not in err


def test_a_local_cluster_speaks_tls_with_a_certificate_of_its_own() -> None:
    with dask_batch.DaskBackend(workers=1)._client() as client:
        assert client.scheduler.address.startswith("tls://")
        assert all(address.startswith("tls://") for address in client.nthreads())
