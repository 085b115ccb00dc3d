"""Whatever a reviewer sends, a decision is read or refused with a 400 naming the field, never a 500;
and whatever a reviewer decides about a pended item, `$inquire` answers a valid PAS response Bundle
carrying the X12 306 code of that decision."""
from __future__ import annotations

import datetime as dt
from typing import Any, Iterator

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pas_helpers import BUNDLED_RULES, REPO, adapted, inquiry
from pas_profiles import check_response_bundle, review_actions

from service import Settings, create_app
from service.api_keys import hash_key
from service.pas.review import ACTIONS, APPEAL_OUTCOMES, BadDecision, Decision, read_decision

KEY = "dana-reviewer-key-0004"
VALUES = st.one_of(st.none(), st.booleans(), st.integers(-3, 10**10), st.floats(allow_nan=True), st.text(max_size=30),
                   st.sampled_from([*ACTIONS, *APPEAL_OUTCOMES, "2030-01-01", "2024-02-30", "https://x.example/p",
                                    "0A"]), st.lists(st.integers(), max_size=2))
FIELDS = st.sampled_from(["action", "outcome", "revision", "reason", "policy_url", "reason_code", "quantity",
                          "valid_from", "valid_to", "extend", "other"])


@given(st.one_of(st.dictionaries(FIELDS, VALUES, max_size=8), VALUES), st.booleans())
def test_any_body_is_read_or_refused_naming_a_field(body: Any, appeal: bool) -> None:
    try:
        decision = read_decision(body, appeal)
    except BadDecision as bad:
        assert bad.field in ("", "action", "outcome", "revision", "reason", "policy_url", "reason_code", "quantity",
                             "valid_from", "valid_to", "extend")
        return
    assert isinstance(decision, Decision) and decision.revision >= 0
    if decision.action in ("deny", "upheld"):
        assert decision.reason and decision.policy_url


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    folder = tmp_path_factory.mktemp("review")
    (folder / "keys.yaml").write_text(f"dana: {hash_key(KEY)}\n", encoding="utf-8")
    yield TestClient(create_app(str(BUNDLED_RULES), Settings(
        payers=REPO / "service" / "payers.yaml", audit_path=folder / "audit.jsonl", data_dir=folder / "data",
        reviewer_keys=folder / "keys.yaml")))


DECISIONS = st.one_of(
    st.just({"action": "certify"}),
    st.builds(lambda q, days: {"action": "modify", "reason": "changed", "quantity": q,
                               "valid_to": (dt.date.today() + dt.timedelta(days=days)).isoformat()},
              st.integers(1, 50), st.integers(0, 400)),
    st.builds(lambda code: {"action": "deny", "reason": "not functional", "policy_url": "https://cms.example/p",
                            **({"reason_code": code} if code else {})}, st.sampled_from([None, "0A", "01"])),
    st.builds(lambda extend: {"action": "pend", "reason": "more", "extend": extend}, st.booleans()))
EXPECTED = {"certify": "A1", "modify": "A6", "deny": "A3", "pend": "A4"}


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(DECISIONS, st.integers(0, 10**9))
def test_any_decision_makes_a_valid_response_with_its_code(client: TestClient, decision: dict[str, Any],
                                                           number: int) -> None:
    trace = f"P{number}"
    submitted = client.post("/fhir/Claim/$submit", json=adapted(transaction=trace, trace=trace, day="2099-01-10"))
    request_id = submitted.json()["entry"][0]["resource"]["id"]
    reply = client.post(f"/review/api/requests/{request_id}/items/1/decision", json={**decision, "revision": 0},
                        headers={"Authorization": f"Bearer {KEY}"})
    assert reply.status_code in (200, 409), reply.text  # 409: this trace was drawn before (the same request)
    found = client.post("/fhir/Claim/$inquire", json=inquiry(trace=trace))
    bundle = check_response_bundle(found.json(), "2.0.1", inquiry=True)
    if reply.status_code == 200:
        assert review_actions(bundle) == [EXPECTED[decision["action"]]]
