"""The PAS store: a request survives a restart (SQLite in the data folder) and is seen by a second
replica (PostgreSQL); the migration makes the tables the models name."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from fastapi.testclient import TestClient
from pas_helpers import adapted, inquiry
from pas_profiles import check_response_bundle, inquiry_bundles, review_actions
from pg_cluster import postgres_url  # noqa: F401 - the session's PostgreSQL cluster
from sqlalchemy import inspect

from service.store import migrate
from service.store.database import Database
from service.store.models import metadata


def _inquired(client: TestClient) -> dict[str, Any]:
    reply = client.post("/fhir/Claim/$inquire", json=inquiry())
    assert reply.status_code == 200, reply.text
    (bundle,) = inquiry_bundles(reply.json(), "2.0.1")
    return check_response_bundle(bundle, "2.0.1", inquiry=True)


def test_a_request_survives_a_restart_of_the_service(make_pas_client: Callable[..., TestClient], tmp_path: Path) -> None:
    with make_pas_client() as first:
        submitted = first.post("/fhir/Claim/$submit", json=adapted(pos="22")).json()
    assert (tmp_path / "data" / "covreq.db").exists()
    with make_pas_client() as restarted:
        found = _inquired(restarted)
        assert found["id"] == submitted["entry"][0]["resource"]["id"] and review_actions(found) == ["A4"]
        again = restarted.post("/fhir/Claim/$submit", json=adapted(pos="22")).json()
        assert again == submitted  # still idempotent across the restart


def test_a_second_replica_on_postgresql_sees_the_request_and_the_duplicate(
        make_pas_client: Callable[..., TestClient], postgres_url: str) -> None:  # noqa: F811
    one, two = make_pas_client(database_url=postgres_url), make_pas_client(database_url=postgres_url)
    transaction = f"T-pg-{id(one)}"
    bundle = adapted(pos="22", transaction=transaction, trace=transaction)
    submitted = one.post("/fhir/Claim/$submit", json=bundle).json()
    asking = inquiry(trace=transaction)
    reply = two.post("/fhir/Claim/$inquire", json=asking)
    assert reply.status_code == 200, reply.text
    (found,) = inquiry_bundles(reply.json(), "2.0.1")
    assert found["entry"][0]["resource"]["id"] == submitted["entry"][0]["resource"]["id"]
    assert two.post("/fhir/Claim/$submit", json=bundle).json() == submitted


def test_the_migrations_make_the_tables_the_models_name(tmp_path: Path) -> None:
    database = Database.open(f"sqlite:///{tmp_path / 'covreq.db'}")
    try:
        inspector = inspect(database.engine)
        for table in metadata.sorted_tables:
            assert {c["name"] for c in inspector.get_columns(table.name)} == {c.name for c in table.columns}, table.name
        assert migrate.current(database.engine) == migrate.head()  # the newest migration, one head
    finally:
        database.close()


def test_the_pas_migration_goes_down_and_up_again(tmp_path: Path) -> None:
    from alembic import command
    database = Database.open(f"sqlite:///{tmp_path / 'covreq.db'}")
    try:
        with database.engine.begin() as connection:
            command.downgrade(migrate.config(connection), "0001")
        assert "pa_request" not in inspect(database.engine).get_table_names()
        migrate.upgrade(database.engine)
        assert {"pa_request", "pa_item", "pa_authorization"} <= set(inspect(database.engine).get_table_names())
    finally:
        database.close()
