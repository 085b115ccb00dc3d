"""The reviewers' API: keys (401/403, never open), the queue by due time, one request with the
rules' findings, certify / modify / deny / pend further, appeals, concurrency (one reviewer wins, the
other gets 409), and what a decision changes: the ClaimResponse `$inquire` answers, the
authorization on file, the audit trail (no PHI) and the submitter's subscription (a real receiver)."""
from __future__ import annotations

import datetime as dt
import json
import threading
from pathlib import Path
from typing import Any, Callable

import pytest
from fastapi.testclient import TestClient
from pas_helpers import adapted, inquiry
from pas_profiles import check_response_bundle, review_actions

from pg_cluster import postgres_url  # noqa: F401 - the session's PostgreSQL cluster
from test_pas_subscriptions import Receiver, receiver  # noqa: F401 - the loopback rest-hook endpoint
from service.api_keys import hash_key

KEYS = {"alice": "alice-reviewer-key-0001", "bob": "bob-reviewer-key-00002"}
MEMBER = "12345678901"  # the kit's Coverage.subscriberId
ORG = "8189991234"  # the kit's requestor Organization identifier
POLICY = "https://www.cms.gov/medicare/coverage/blepharoplasty"


def auth(name: str = "alice") -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[name]}"}


@pytest.fixture()
def keys_file(tmp_path: Path) -> Path:
    path = tmp_path / "reviewers.yaml"
    path.write_text("".join(f"{name}: {hash_key(key)}\n" for name, key in KEYS.items()), encoding="utf-8")
    return path


@pytest.fixture()
def review_client(make_pas_client: Callable[..., TestClient], keys_file: Path) -> TestClient:
    return make_pas_client(reviewer_keys=keys_file)


def submitted(client: TestClient, transaction: str = "T-1", trace: str = "111099", day: str | None = None) -> str:
    """Submit a blepharoplasty request without documentation (pended); the request's id."""
    day = day or (dt.date.today() + dt.timedelta(days=10)).isoformat()
    reply = client.post("/fhir/Claim/$submit", json=adapted(day=day, transaction=transaction, trace=trace))
    assert reply.status_code == 200, reply.text
    response = reply.json()["entry"][0]["resource"]
    assert review_actions(response) == ["A4"]
    return str(response["id"])


def decide(client: TestClient, request_id: str, body: dict[str, Any], who: str = "alice",
           kind: str = "decision") -> Any:
    return client.post(f"/review/api/requests/{request_id}/items/1/{kind}", json=body, headers=auth(who))


def inquired(client: TestClient) -> dict[str, Any]:
    reply = client.post("/fhir/Claim/$inquire", json=inquiry())
    assert reply.status_code == 200, reply.text
    check_response_bundle(reply.json(), "2.0.1", inquiry=True)
    return reply.json()["entry"][0]["resource"]  # type: ignore[no-any-return]


def test_the_reviewers_api_is_refused_until_keys_are_configured_and_without_a_valid_key(
        pas_client: TestClient, review_client: TestClient) -> None:
    off = pas_client.get("/review/api/queue", headers=auth())
    assert off.status_code == 403 and "COVREQ_REVIEWER_KEYS" in off.json()["error"]["message"]
    missing = review_client.get("/review/api/queue")
    assert missing.status_code == 401 and missing.headers["WWW-Authenticate"].startswith("Bearer")
    wrong = review_client.get("/review/api/queue", headers={"Authorization": "Bearer not-a-reviewer-key-at-all"})
    assert wrong.status_code == 401 and wrong.json()["error"]["message"] == "the reviewer key is not valid"
    assert review_client.post("/review/api/requests/x/items/1/decision", json={}).status_code == 401


def test_the_queue_lists_pended_requests_by_due_time_with_the_time_left(review_client: TestClient) -> None:
    first, second = submitted(review_client, "T-1", "1"), submitted(review_client, "T-2", "2")
    queue = review_client.get("/review/api/queue", headers=auth()).json()
    assert queue["pended"] == 2 and [r["id"] for r in queue["requests"]] == [first, second]
    entry = queue["requests"][0]
    assert entry["priority"] == "expedited" and not entry["overdue"] and entry["items"] == [{"sequence": 1, "code": "15823"}]
    assert 72 * 3600 - 60 < entry["seconds_left"] <= 72 * 3600  # the kit's request is urgent (X12 1338 U)
    assert MEMBER not in json.dumps(queue)  # no patient data in the queue


def test_one_request_shows_the_rules_findings_the_documentation_owed_and_the_policies(review_client: TestClient) -> None:
    request_id = submitted(review_client)
    found = review_client.get(f"/review/api/requests/{request_id}", headers=auth()).json()
    [item] = found["items"]
    assert item["status"] == "pended" and item["revision"] == 0 and item["pa_needed"] == "auth-needed"
    assert len(item["documentation_owed"]) == 6 and item["documentation_present"] == []
    assert item["policies"][0]["url"].startswith("https://www.cms.gov/")
    assert found["request"]["entry"][0]["resource"]["item"][0]["productOrService"]["coding"][0]["code"] == "15823"
    assert review_client.get("/review/api/requests/nope", headers=auth()).status_code == 404


def test_a_certified_item_is_answered_a1_by_inquire_and_becomes_an_authorization_on_file(
        review_client: TestClient) -> None:
    request_id = submitted(review_client)
    reply = decide(review_client, request_id, {"action": "certify", "revision": 0})
    assert reply.status_code == 200, reply.text
    item = reply.json()["item"]
    today = dt.date.today()
    assert item["status"] == "certified" and item["decided_by"] == "alice" and item["revision"] == 1
    assert item["valid_from"] == today.isoformat()
    assert item["valid_to"] == (today + dt.timedelta(days=119)).isoformat()  # the policy's 120 days, today day 1
    response = inquired(review_client)
    assert review_actions(response) == ["A1"] and response["preAuthRef"] == item["authorization_number"]
    assert reply.json()["request"]["status"] == "complete"
    v1 = review_client.post("/v1/requirements", json={"payer": "medicare", "place_of_service": "22",
                                                      "date_of_service": (today + dt.timedelta(days=10)).isoformat(),
                                                      "patient": {"id": MEMBER}, "services": [{"code": "15823"}]})
    assert v1.json()["decisions"][0]["pa_needed"] == "satisfied"
    assert review_client.get("/review/api/queue", headers=auth()).json()["pended"] == 0


def test_a_denial_needs_a_specific_reason_and_a_policy_link_and_carries_them_to_inquire(
        review_client: TestClient, tmp_path: Path) -> None:
    request_id = submitted(review_client)
    no_reason = decide(review_client, request_id, {"action": "deny", "revision": 0, "policy_url": POLICY})
    assert no_reason.status_code == 400 and no_reason.json()["error"]["location"] == "reason"
    no_policy = decide(review_client, request_id, {"action": "deny", "revision": 0, "reason": "Not functional."})
    assert no_policy.status_code == 400 and no_policy.json()["error"]["location"] == "policy_url"
    reason = "Visual field loss under 12 degrees: cosmetic, not functional"
    denied = decide(review_client, request_id, {"action": "deny", "revision": 0, "reason": reason,
                                                "policy_url": POLICY, "reason_code": "0U"})
    assert denied.status_code == 200, denied.text
    response = inquired(review_client)
    assert review_actions(response) == ["A3"] and "preAuthRef" not in response
    action = response["item"][0]["adjudication"][0]["extension"][0]["extension"]
    assert {"url": "reasonCode", "valueCodeableConcept": {"coding": [
        {"system": "https://codesystem.x12.org/external/886", "code": "0U"}]}} in action
    notes = " ".join(n["text"] for n in response["processNote"])
    assert reason in notes and POLICY in notes and "alice" in notes
    audit = (tmp_path / "audit.jsonl").read_text(encoding="utf-8")
    [record] = [r for r in map(json.loads, audit.splitlines()) if r["operation"].startswith("review-")]
    assert record["caller"] == {"kind": "reviewer", "name": "alice"} and record["operation"] == "review-decision-deny"
    assert record["decisions"][0]["review_action"] == "A3" and reason not in audit and MEMBER not in audit


def test_a_modified_item_is_a6_with_the_quantity_and_dates_the_reviewer_gave(review_client: TestClient) -> None:
    request_id = submitted(review_client)
    start, end = dt.date.today(), dt.date.today() + dt.timedelta(days=30)
    unchanged = decide(review_client, request_id, {"action": "modify", "revision": 0, "reason": "one eye"})
    assert unchanged.status_code == 400 and "quantity" in unchanged.json()["error"]["message"]
    reply = decide(review_client, request_id, {"action": "modify", "revision": 0, "reason": "One eyelid only.",
                                               "quantity": 1, "valid_from": start.isoformat(),
                                               "valid_to": end.isoformat()})
    assert reply.status_code == 200, reply.text
    item = inquired(review_client)["item"][0]
    assert review_actions({"item": [item]}) == ["A6"]
    extensions = {e["url"].rsplit("-", 1)[-1]: e for e in item["extension"]}
    assert extensions["itemPreAuthPeriod"]["valuePeriod"] == {"start": start.isoformat(), "end": end.isoformat()}
    assert extensions["itemAuthorizedDetail"]["extension"] == [{"url": "quantity", "valueQuantity": {"value": 1.0}}]


def test_pending_further_extends_the_review_timeframe_once(review_client: TestClient) -> None:
    request_id = submitted(review_client)
    before = review_client.get(f"/review/api/requests/{request_id}", headers=auth()).json()
    reply = decide(review_client, request_id, {"action": "pend", "revision": 0, "reason": "Photographs requested.",
                                               "extend": True})
    assert reply.status_code == 200, reply.text
    after = reply.json()["request"]
    assert after["extended"] and dt.datetime.fromisoformat(after["due_at"]) - dt.datetime.fromisoformat(
        before["due_at"]) == dt.timedelta(days=14)
    assert review_actions(inquired(review_client)) == ["A4"]
    again = decide(review_client, request_id, {"action": "pend", "revision": 1, "reason": "Still waiting.",
                                               "extend": True})
    assert again.status_code == 409 and "already extended" in again.json()["error"]["message"]
    notes = " ".join(n["text"] for n in inquired(review_client)["processNote"])
    assert "Photographs requested." in notes and "Documentation still owed" in notes


def test_an_appeal_of_a_denial_is_recorded_and_approved_after_appeal_certifies_the_item(
        review_client: TestClient) -> None:
    request_id = submitted(review_client)
    denial = {"action": "deny", "revision": 0, "reason": "Not functional.", "policy_url": POLICY}
    assert decide(review_client, request_id, denial).status_code == 200
    assert decide(review_client, request_id, {"action": "certify", "revision": 1}).status_code == 409
    filed = decide(review_client, request_id, {"outcome": "filed", "revision": 1}, kind="appeal")
    assert filed.status_code == 200 and filed.json()["item"]["appeal"]["outcome"] == "filed"
    approved = decide(review_client, request_id, {"outcome": "approved", "revision": 2, "reason": "New photos."},
                      who="bob", kind="appeal")
    assert approved.status_code == 200, approved.text
    item = approved.json()["item"]
    assert item["status"] == "certified" and item["appeal"]["outcome"] == "approved" and item["decided_by"] == "bob"
    assert review_actions(inquired(review_client)) == ["A1"]
    closed = decide(review_client, request_id, {"outcome": "upheld", "revision": 3, "reason": "x",
                                                "policy_url": POLICY}, kind="appeal")
    assert closed.status_code == 409


@pytest.mark.parametrize("body, field", [
    ({"action": "approve", "revision": 0}, "action"), ({"action": "certify"}, "revision"),
    ({"action": "certify", "revision": -1}, "revision"), ({"action": "certify", "revision": True}, "revision"),
    ({"action": "deny", "revision": 0, "reason": "x", "policy_url": "javascript:alert(1)"}, "policy_url"),
    ({"action": "deny", "revision": 0, "reason": "x", "policy_url": POLICY, "reason_code": "not one"}, "reason_code"),
    ({"action": "modify", "revision": 0, "reason": "x", "quantity": -2}, "quantity"),
    ({"action": "certify", "revision": 0, "valid_to": "2024-13-01"}, "valid_to"),
    ({"action": "certify", "revision": 0, "valid_from": "2030-01-02", "valid_to": "2030-01-01"}, "valid_to"),
    ({"action": "certify", "revision": 0, "extend": True}, "extend"), ([], ""),
])
def test_bad_decisions_are_400_naming_the_field(review_client: TestClient, body: Any, field: str) -> None:
    request_id = submitted(review_client)
    reply = decide(review_client, request_id, body)
    assert reply.status_code == 400 and reply.json()["error"]["location"] == field, reply.text
    assert review_client.post(f"/review/api/requests/{request_id}/items/1/decision", content=b"{",
                              headers=auth()).status_code == 400
    assert decide(review_client, request_id, {"action": "certify", "revision": 0}).status_code == 200


def _race(one: TestClient, two: TestClient, request_id: str) -> list[int]:
    """alice on ``one`` certifies and bob on ``two`` denies the same item at the same moment; the statuses."""
    answers: list[int] = []
    start = threading.Barrier(2)

    def reviewer(client: TestClient, name: str, action: dict[str, Any]) -> None:
        start.wait()
        answers.append(decide(client, request_id, action, who=name).status_code)
    threads = [threading.Thread(target=reviewer, args=(one, "alice", {"action": "certify", "revision": 0})),
               threading.Thread(target=reviewer, args=(two, "bob", {"action": "deny", "revision": 0, "reason": "No.",
                                                                    "policy_url": POLICY}))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sorted(answers)


def test_two_reviewers_deciding_the_same_item_one_wins_the_other_gets_409(review_client: TestClient) -> None:
    request_id = submitted(review_client)
    assert _race(review_client, review_client, request_id) == [200, 409]
    assert review_actions(inquired(review_client)) in (["A1"], ["A3"])


def test_two_replicas_on_postgresql_one_reviewer_wins_and_both_answer_the_decision(
        make_pas_client: Callable[..., TestClient], keys_file: Path, postgres_url: str) -> None:  # noqa: F811
    one, two = (make_pas_client(reviewer_keys=keys_file, database_url=postgres_url) for _ in range(2))
    request_id = submitted(one, transaction=f"T-review-{id(one)}", trace="111099")
    assert _race(one, two, request_id) == [200, 409]
    decided = two.get(f"/review/api/requests/{request_id}", headers=auth()).json()["items"][0]
    assert decided["revision"] == 1 and decided["status"] in ("certified", "denied")


def test_a_decision_notifies_the_submitters_subscription_with_the_updated_response(
        make_pas_client: Callable[..., TestClient], keys_file: Path, receiver: Receiver) -> None:
    client = make_pas_client(reviewer_keys=keys_file, subscription_endpoints=(receiver.url,))
    subscription = json.loads((Path(__file__).parents[2] / "fixtures" / "pas-subscriptions"
                               / "kit-PAS_Subscription_example_v221_good.json").read_text(encoding="utf-8"))
    subscription["channel"]["endpoint"] = receiver.url
    assert client.post("/fhir/Subscription", json=subscription).status_code == 201
    request_id = submitted(client)
    assert decide(client, request_id, {"action": "certify", "revision": 0}).status_code == 200
    event = receiver.posts[-1][2]
    focus = next(e["resource"] for e in event["entry"][1:] if e.get("resource", {}).get("resourceType") == "Bundle")
    assert focus["entry"][0]["resource"]["id"] == request_id
    assert review_actions(focus["entry"][0]["resource"]) == ["A1"]


def test_an_item_no_policy_dates_needs_the_reviewers_valid_to_and_an_unknown_item_is_404(
        review_client: TestClient) -> None:
    from pas_helpers import kit
    reply = review_client.post("/fhir/Claim/$submit", json=kit("kit-preset-pended_pa_submit_request_payload.json"))
    request_id = reply.json()["entry"][0]["resource"]["id"]  # an X12 service type, no rule: pended
    undated = decide(review_client, request_id, {"action": "certify", "revision": 0})
    assert undated.status_code == 400 and undated.json()["error"]["location"] == "valid_to"
    assert "no policy of this item states" in undated.json()["error"]["message"]
    end = (dt.date.today() + dt.timedelta(days=60)).isoformat()
    dated = decide(review_client, request_id, {"action": "certify", "revision": 0, "valid_to": end})
    assert dated.status_code == 200 and dated.json()["item"]["valid_to"] == end
    missing = review_client.post(f"/review/api/requests/{request_id}/items/9/decision",
                                 json={"action": "certify", "revision": 0}, headers=auth())
    assert missing.status_code == 404 and "item 9" in missing.json()["error"]["message"]
