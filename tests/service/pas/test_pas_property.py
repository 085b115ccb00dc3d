"""Whatever a PAS request says, covreq answers a valid response Bundle or a 4xx OperationOutcome, never
a 500, and never denies: every item is certified, pended or needs no prior authorization."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pas_helpers import BUNDLED_RULES, adapted
from pas_profiles import check_response_bundle, review_actions
import pytest

from service import Settings, create_app

CODES = ["15823", "15822", "67904", "64612", "J0585", "L0648", "E0110", "99213", "0001F"]
JUNK = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=12), st.lists(st.text(max_size=4), max_size=2),
                 st.dictionaries(st.text(max_size=4), st.text(max_size=4), max_size=2))


@pytest.fixture(scope="module")
def module_client(tmp_path_factory: pytest.TempPathFactory) -> TestClient:
    folder = tmp_path_factory.mktemp("pas")
    return TestClient(create_app(str(BUNDLED_RULES), Settings(
        payers=Path(__file__).resolve().parents[3] / "service" / "payers.yaml", audit_path=folder / "audit.jsonl",
        data_dir=folder / "data")))


@st.composite
def requests(draw: st.DrawFn) -> dict[str, Any]:
    bundle = adapted(code=draw(st.sampled_from(CODES)), pos=draw(st.from_regex(r"\A[0-9]{2}\Z")),
                     day=draw(st.dates()).isoformat(), transaction=draw(st.uuids()).hex, trace=draw(st.uuids()).hex)
    item = bundle["entry"][0]["resource"]["item"][0]
    for key in draw(st.lists(st.sampled_from(["servicedDate", "locationCodeableConcept", "productOrService",
                                              "diagnosisSequence", "sequence"]), max_size=2)):
        if draw(st.booleans()):
            item.pop(key, None)
        else:
            item[key] = draw(JUNK)
    if draw(st.booleans()):
        bundle["entry"][draw(st.integers(0, len(bundle["entry"]) - 1))]["resource"][draw(st.sampled_from(
            ["id", "status", "identifier", "subscriberId", "insurer", "patient", "use"]))] = draw(JUNK)
    return bundle


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(bundle=requests())
def test_any_request_gets_a_valid_answer_or_a_4xx_and_never_a_denial(module_client: TestClient,
                                                                      bundle: dict[str, Any]) -> None:
    reply = module_client.post("/fhir/Claim/$submit", json=bundle)
    assert reply.status_code in (200, 400, 413), reply.text
    if reply.status_code != 200:
        outcome = reply.json()
        assert outcome["resourceType"] == "OperationOutcome" and outcome["issue"][0]["diagnostics"]
        return
    response = check_response_bundle(reply.json(), "2.0.1", claim=bundle["entry"][0]["resource"])
    assert set(review_actions(response)) <= {"A1", "A4", "NA"}
