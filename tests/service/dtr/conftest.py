"""Fixtures of the DTR tests: a service on the bundled rules and the $next-question round trip."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest
from dtr_helpers import BUNDLED_RULES, FIXTURES
from fastapi.testclient import TestClient

from service import Settings, create_app


@pytest.fixture()
def dtr_client(tmp_path: Path) -> TestClient:
    """The service on the bundled rules, with the test payer mapping."""
    return TestClient(create_app(str(BUNDLED_RULES), Settings(payers=FIXTURES / "payers.yaml",
                                                              audit_path=tmp_path / "audit.jsonl")))


@pytest.fixture(scope="module")
def module_client(tmp_path_factory: pytest.TempPathFactory) -> TestClient:
    """One service on the bundled rules for a whole module (hypothesis runs its examples in one test)."""
    audit = tmp_path_factory.mktemp("dtr") / "audit.jsonl"
    return TestClient(create_app(str(BUNDLED_RULES), Settings(payers=FIXTURES / "payers.yaml", audit_path=audit)))


@pytest.fixture()
def make_dtr_client(tmp_path: Path) -> Callable[..., TestClient]:
    """Build a service on the bundled rules with settings overrides."""
    def build(**overrides: Any) -> TestClient:
        return TestClient(create_app(str(BUNDLED_RULES), Settings(**{
            "payers": FIXTURES / "payers.yaml", "audit_path": tmp_path / "audit.jsonl", **overrides})))
    return build


@pytest.fixture()
def next_question(dtr_client: TestClient) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """POST $next-question with a response; the returned response (checked to be 200)."""
    def call(response: dict[str, Any]) -> dict[str, Any]:
        reply = dtr_client.post("/fhir/Questionnaire/$next-question", json={
            "resourceType": "Parameters", "parameter": [{"name": "questionnaire-response", "resource": response}]})
        assert reply.status_code == 200, reply.text
        assert reply.headers["content-type"].startswith("application/fhir+json")
        returned = reply.json()
        assert returned["resourceType"] == "QuestionnaireResponse"  # the single return resource, as itself
        return returned  # type: ignore[no-any-return]
    return call
