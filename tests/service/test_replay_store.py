"""One replay store for all workers and replicas (issue 26 item 6): a JWT ``jti`` used once is refused
everywhere, with SQLite (the embedded default) and with PostgreSQL (a cluster started by the test)."""
from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import httpx
import pytest
from sqlalchemy import func, insert, select, text

from pg_cluster import postgres_url  # noqa: F401 - the session's PostgreSQL cluster
from serving import served, wait_until
from test_auth import CDS_PATH, SERVICE_URL, auth_files, keys, token  # noqa: F401 - fixtures
from service.store import migrate
from service.store.database import Database
from service.store.engine import normalized
from service.store.models import jwt_replay
from service.store.replay import PURGE_BATCH, DatabaseReplay

FIXTURE_RULES = Path(__file__).resolve().parent / "fixtures" / "rules"
FIXTURE_PAYERS = Path(__file__).resolve().parent / "fixtures" / "payers.yaml"


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh database: a SQLite file, or the test cluster's database emptied of replay rows."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'covreq.db'}"
        return
    url = request.getfixturevalue("postgres_url")
    yield url
    database = Database.open(url)
    with database.engine.begin() as connection:
        connection.execute(jwt_replay.delete())
    database.close()


def test_a_jti_is_accepted_once_and_refused_until_it_expires(database_url: str) -> None:
    now = [1_000.0]
    database = Database.open(database_url)
    replay = DatabaseReplay(database.engine, clock=lambda: now[0])
    assert replay.first_use(("https://ehr", "a"), 1_100.0)
    assert not replay.first_use(("https://ehr", "a"), 1_100.0)
    assert replay.first_use(("https://clinic", "a"), 1_100.0)  # the key is (issuer, jti)
    now[0] = 1_101.0  # the first token expired: its row no longer holds the jti
    assert replay.first_use(("https://ehr", "a"), 1_200.0)
    assert not replay.first_use(("https://ehr", "a"), 1_200.0)
    database.close()


def test_expired_rows_are_purged_in_bounded_batches(database_url: str) -> None:
    database = Database.open(database_url)
    with database.engine.begin() as connection:
        connection.execute(insert(jwt_replay), [{"issuer": "i", "jti": str(n), "expires_at": 10.0}
                                                for n in range(PURGE_BATCH + 5)])
        connection.execute(insert(jwt_replay).values(issuer="i", jti="live", expires_at=10_000.0))
    replay = DatabaseReplay(database.engine, clock=lambda: 100.0)
    assert replay.purge(100.0) == PURGE_BATCH
    assert replay.first_use(("i", "new"), 10_000.0)  # the last batch was full: this insert purges the rest
    with database.engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(jwt_replay)).scalar_one() == 2
    database.close()


def _claim(url: str, keys_to_try: list[str], start: Any, results: Any) -> None:
    """In a separate process: offer every key once, after ``start`` opens; report the ones accepted."""
    database = Database.open(url)
    start.wait()
    results.put([jti for jti in keys_to_try if database.replay.first_use(("https://ehr", jti), time.time() + 600)])
    database.close()


def test_two_processes_never_both_accept_a_jti(database_url: str) -> None:
    jtis = [f"jti-{n}" for n in range(150)]
    context = multiprocessing.get_context("spawn")
    start, results = context.Event(), context.Queue()
    workers = [context.Process(target=_claim, args=(database_url, list(order), start, results))
               for order in (jtis, jtis[::-1])]
    for worker in workers:
        worker.start()
    start.set()
    accepted = [results.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join(timeout=30)
    assert sorted(accepted[0] + accepted[1]) == sorted(jtis)  # each exactly once, whichever process had it


def _upgrade(url: str) -> None:
    Database.open(url).close()


def test_migrations_run_once_however_many_processes_start_together(database_url: str) -> None:
    context = multiprocessing.get_context("spawn")
    starting = [context.Process(target=_upgrade, args=(database_url,)) for _ in range(3)]
    for process in starting:
        process.start()
    for process in starting:
        process.join(timeout=60)
    assert [process.exitcode for process in starting] == [0, 0, 0]
    database = Database.open(database_url)
    assert migrate.current(database.engine) == migrate.head()
    database.close()


def test_a_database_that_fails_answers_503_not_401_or_500(make_client: Callable[..., Any], tmp_path: Path,
                                                          auth_files: dict[str, Path], keys: dict[str, Any],  # noqa: F811
                                                          ig_order_sign: Callable[[], dict[str, Any]]) -> None:
    url = f"sqlite:///{tmp_path / 'covreq.db'}"
    client = make_client(auth_issuers=auth_files["issuers"], service_url=SERVICE_URL, database_url=url)
    with client.app.state.database.engine.begin() as connection:
        connection.execute(text("DROP TABLE jwt_replay"))  # every INSERT now fails
    answer = client.post(CDS_PATH, json=ig_order_sign(), headers={"Authorization": f"Bearer {token(keys)}"})
    assert answer.status_code == 503 and "replay store" in answer.json()["issue"][0]["diagnostics"]
    assert client.post("/v1/requirements", json={"payer": "acme", "services": [{"code": "15823"}]}).status_code == 200


def test_a_postgres_url_uses_psycopg_and_an_unusable_url_stops_the_start() -> None:
    assert normalized("postgres://u:p@db/covreq").startswith("postgresql+psycopg://u:p@db/covreq")
    with pytest.raises(ValueError, match="covreq takes sqlite or postgresql"):
        normalized("mysql://u:secret@db/covreq")
    with pytest.raises(ValueError, match="cannot be used") as refused:
        Database.open("postgresql://covreq:secret-password@127.0.0.1:1/covreq")
    assert "secret-password" not in str(refused.value)


def test_covreq_serve_does_not_start_on_a_database_it_cannot_use(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.getcwd(), "COVREQ_AUDIT": str(tmp_path / "audit.jsonl"),
           "COVREQ_DATABASE_URL": "postgresql://covreq:hunter2@127.0.0.1:1/covreq"}
    started = subprocess.run([sys.executable, "-m", "covreq", "serve", "--rules", str(FIXTURE_RULES),
                              "--port", "0"], env=env, capture_output=True, text=True, timeout=60)
    assert started.returncode == 1 and "hunter2" not in started.stdout + started.stderr
    assert started.stderr.startswith("covreq serve: cannot start: the database postgresql+psycopg://covreq:***@")


def _workers(serve_pid: int) -> list[int]:
    """The worker processes of a ``covreq serve --workers N`` (the supervisor's spawned children)."""
    children = Path(f"/proc/{serve_pid}/task/{serve_pid}/children").read_text().split()
    return [int(pid) for pid in children if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()]


@contextmanager
def _only(worker: int, workers: list[int]) -> Iterator[None]:
    """Only ``worker`` accepts connections while the block runs: the others are stopped (SIGSTOP), briefly,
    within the supervisor's health-check interval."""
    others = [pid for pid in workers if pid != worker]
    for pid in others:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in others:
            os.kill(pid, signal.SIGCONT)


def _call(base: str, jwt_text: str, body: dict[str, Any]) -> httpx.Response:
    """One CDS Hooks call with ``jwt_text`` on a connection of its own."""
    return httpx.post(base + CDS_PATH, json=body, timeout=10,
                      headers={"Authorization": f"Bearer {jwt_text}", "Connection": "close"})


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_token_is_refused_on_its_second_use_whichever_worker_gets_it(
        backend: str, tmp_path: Path, auth_files: dict[str, Path], keys: dict[str, Any],  # noqa: F811
        ig_order_sign: Callable[[], dict[str, Any]], request: pytest.FixtureRequest) -> None:
    env = {"PYTHONPATH": os.getcwd(), "COVREQ_PAYERS": str(FIXTURE_PAYERS),
           "COVREQ_AUTH_ISSUERS": str(auth_files["issuers"]), "COVREQ_SERVICE_URL": SERVICE_URL,
           "COVREQ_DATA_DIR": str(tmp_path / "data")}  # no URL: --workers 2 takes SQLite in the data folder
    if backend == "postgresql":
        env["COVREQ_DATABASE_URL"] = request.getfixturevalue("postgres_url")
    body = ig_order_sign()
    with served(tmp_path, "--rules", str(FIXTURE_RULES), "--workers", "2", env=env) as service:
        wait_until(lambda: sum(e.get("event") == "started" for e in service.events()) == 2, seconds=60)
        first, second = _workers(service.process.pid)  # both serving: each is stopped below for one call at most
        for user, other in ((first, second), (second, first)):
            jwt_text = token(keys)
            with _only(user, [first, second]):
                assert _call(service.base, jwt_text, body).status_code == 200
            for replayer in (other, user):
                with _only(replayer, [first, second]):
                    again = _call(service.base, jwt_text, body)
                assert again.status_code == 401 and "replay" in again.json()["issue"][0]["diagnostics"], again.text[:300]
    if backend == "sqlite":
        assert (tmp_path / "data" / "covreq.db").exists()
