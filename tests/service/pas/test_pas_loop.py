"""Closing the loop: an authorization covreq certified satisfies later v1 and CRD answers for the same
member, code and dates, without the caller passing it in; the overdue query and the decision clock."""
from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi.testclient import TestClient
from pas_helpers import MEDICARE, PLAN_CLASS, adapted, completed_dtr, with_resource
from pas_profiles import review_actions

from service.pas import clock

MEMBER = "12345678901"  # the kit's Coverage.subscriberId


def certified(client: TestClient, day: str = "2024-03-14") -> str:
    """Submit a complete blepharoplasty request; its authorization number."""
    reply = client.post("/fhir/Claim/$submit", json=with_resource(adapted(pos="22", day=day), completed_dtr(client, day=day)))
    response = reply.json()["entry"][0]["resource"]
    assert review_actions(response) == ["A1"], response
    return str(response["preAuthRef"])


def v1(client: TestClient, member: str | None, day: str, code: str = "15823") -> dict[str, Any]:
    body: dict[str, Any] = {"payer": "medicare", "date_of_service": day, "place_of_service": "22",
                            "services": [{"code": code}]}
    if member is not None:
        body["patient"] = {"id": member}
    reply = client.post("/v1/requirements", json=body)
    assert reply.status_code == 200, reply.text
    return reply.json()["decisions"][0]  # type: ignore[no-any-return]


def test_a_certified_authorization_satisfies_later_v1_answers_for_the_member_code_and_dates(
        affirming_client: TestClient) -> None:
    today = dt.date.today()
    number = certified(affirming_client, (today + dt.timedelta(days=7)).isoformat())
    inside = v1(affirming_client, MEMBER, (today + dt.timedelta(days=30)).isoformat())
    assert inside["pa_needed"] == "satisfied" and inside["authorization"] == number
    assert v1(affirming_client, MEMBER, (today + dt.timedelta(days=120)).isoformat())["pa_needed"] == "auth-needed"
    assert v1(affirming_client, "someone-else", today.isoformat())["pa_needed"] == "auth-needed"
    assert v1(affirming_client, None, today.isoformat())["pa_needed"] == "auth-needed"
    assert v1(affirming_client, MEMBER, today.isoformat(), code="15822")["pa_needed"] == "auth-needed"


def test_a_certified_authorization_satisfies_a_later_crd_answer_with_its_id(affirming_client: TestClient) -> None:
    today = dt.date.today().isoformat()
    number = certified(affirming_client, today)
    coverage = {"resourceType": "Coverage", "id": "cov-1", "status": "active", "subscriberId": MEMBER,
                "beneficiary": {"reference": "Patient/pat-1"}, "payor": [{"identifier": MEDICARE}],
                "class": [{"type": {"coding": [{"system": PLAN_CLASS, "code": "plan"}]}, "value": "Medicare Part B"}]}
    order = {"resourceType": "ServiceRequest", "id": "sr-1", "status": "draft", "intent": "order",
             "subject": {"reference": "Patient/pat-1"},
             "code": {"coding": [{"system": "http://www.ama-assn.org/go/cpt", "code": "15823"}]},
             "occurrenceDateTime": today,
             "locationCode": [{"coding": [{"system": "https://www.cms.gov/Medicare/Coding/place-of-service-codes/"
                                                     "Place_of_Service_Code_Set", "code": "22"}]}]}
    call = {"hook": "order-sign", "hookInstance": "h-1", "context": {
        "userId": "Practitioner/pr-1", "patientId": "pat-1",
        "draftOrders": {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": order}]}},
        "prefetch": {"coverage": {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": coverage}]}}}
    reply = affirming_client.post("/cds-services/order-sign-crd", json=call)
    assert reply.status_code == 200, reply.text
    (action,) = reply.json()["systemActions"]
    (info,) = [e for e in action["resource"]["extension"] if e["url"].endswith("ext-coverage-information")]
    subs = {s["url"]: s for s in info["extension"]}
    assert subs["pa-needed"]["valueCode"] == "satisfied"
    assert subs["satisfied-pa-id"]["valueString"] == number


def test_no_database_is_made_by_questions_before_any_pas_request(pas_client: TestClient, tmp_path: Any) -> None:
    assert v1(pas_client, MEMBER, "2024-03-14")["pa_needed"] == "auth-needed"
    assert pas_client.get("/v1/pa-requests/overdue").json()["overdue"] == []
    assert not (tmp_path / "data").exists()


def test_the_decision_is_due_72_hours_after_receipt_when_expedited_and_7_days_when_standard() -> None:
    received = dt.datetime(2024, 3, 14, 9, 30, tzinfo=dt.timezone.utc)
    assert clock.due(received, clock.EXPEDITED) == dt.datetime(2024, 3, 17, 9, 30, tzinfo=dt.timezone.utc)
    assert clock.due(received, clock.STANDARD) == dt.datetime(2024, 3, 21, 9, 30, tzinfo=dt.timezone.utc)
    assert clock.overdue(clock.due(received, clock.STANDARD), received + dt.timedelta(days=7, seconds=1))
    assert not clock.overdue(clock.due(received, clock.STANDARD), received + dt.timedelta(days=7))


def test_pended_requests_past_their_due_time_are_listed_as_overdue(pas_client: TestClient) -> None:
    expedited = adapted(pos="22")  # the kit's Claim asks for urgent service (X12 1338 U): expedited
    standard = adapted(pos="22", transaction="T-2", trace="2")
    standard["entry"][0]["resource"]["extension"] = [
        e for e in standard["entry"][0]["resource"]["extension"] if not e["url"].endswith("levelOfServiceCode")]
    ids = [pas_client.post("/fhir/Claim/$submit", json=b).json()["entry"][0]["resource"]["id"] for b in (expedited, standard)]
    assert pas_client.get("/v1/pa-requests/overdue").json()["overdue"] == []
    store = pas_client.app.state.pas_store  # type: ignore[attr-defined]
    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=4)
    listed = store.overdue(later)
    assert [r["id"] for r in listed] == [ids[0]] and listed[0]["priority"] == "expedited"
    listed = store.overdue(later + dt.timedelta(days=4))
    assert [r["id"] for r in listed] == ids and listed[1]["priority"] == "standard"


def test_the_overdue_metric_counts_pended_requests_past_their_due_time(pas_client: TestClient) -> None:
    assert "covreq_pa_requests_overdue 0.0" in pas_client.get("/metrics").text
    pas_client.post("/fhir/Claim/$submit", json=adapted(pos="22"))
    store = pas_client.app.state.pas_store  # type: ignore[attr-defined]
    assert store.overdue_count() == 0
    assert store.overdue_count(dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=4)) == 1
    assert "covreq_pa_requests_overdue 0.0" in pas_client.get("/metrics").text
