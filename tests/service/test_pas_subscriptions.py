"""PAS subscriptions (R4 Subscriptions Backport) against a real rest-hook receiver on loopback:
create and its handshake, read, search, $status, delete, event notifications of a decided request
(full-resource and id-only), retries, the endpoint allow-list, heartbeats, and the database (a
restart with SQLite, a second replica with PostgreSQL)."""
from __future__ import annotations

import asyncio
import copy
import datetime as dt
import json
import logging
import threading
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete, update

import loopback
from pg_cluster import postgres_url  # noqa: F401 - the session's PostgreSQL cluster
from service.fhir import r4
from service.pas.notifier import notify_decision
from service.pas.subscription_store import pas_subscription, pas_subscription_org
from service.pas.subscriptions import CONTENT, HEARTBEAT
from service.store.database import Database

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "pas-subscriptions"
ORG = "8189991234"


def fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


class Receiver:
    """A rest-hook endpoint: records each POST (path, headers, JSON body) and answers the next of
    ``statuses`` (200 once they run out)."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, dict[str, str], dict[str, Any]]] = []
        self.statuses: list[int] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(loopback.QuietHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with receiver.lock:
                    receiver.posts.append((self.path, dict(self.headers), body))
                    status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send(status, b"{}", {"Location": "/elsewhere"} if status == 302 else None)

        self.server = loopback.start(Handler)
        self.url = loopback.origin(self.server) + "/hook"


@pytest.fixture()
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    yield found
    loopback.stop(found.server)


@pytest.fixture()
def pas_client(make_client: Callable[..., TestClient], receiver: Receiver, tmp_path: Path) -> TestClient:
    return make_client(database_url=f"sqlite:///{tmp_path / 'covreq.db'}", subscription_endpoints=(receiver.url,),
                       subscription_attempts=3)


def subscription(endpoint: str, content: str = "full-resource", **channel: Any) -> dict[str, Any]:
    """The kit's 2.2.1 Subscription pointed at ``endpoint``."""
    resource = fixture("kit-PAS_Subscription_example_v221_good.json")
    resource["channel"]["endpoint"] = endpoint
    resource["channel"]["_payload"]["extension"][0]["valueCode"] = content
    resource["channel"].update(channel)
    return resource


def kinds(receiver: Receiver) -> list[str]:
    return [next(p["valueCode"] for p in body["entry"][0]["resource"]["parameter"] if p["name"] == "type")
            for _, _, body in receiver.posts]


def parameter(body: dict[str, Any], name: str) -> Any:
    return next(p for p in body["entry"][0]["resource"]["parameter"] if p["name"] == name)


def test_the_kits_subscription_is_created_requested_and_its_handshake_makes_it_active(
        pas_client: TestClient, receiver: Receiver) -> None:
    created = pas_client.post("/fhir/Subscription",
                              json=subscription(receiver.url, header=["Authorization: Bearer subscriber-secret"]))
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["status"] == "requested" and body["resourceType"] == "Subscription"
    assert created.headers["location"].endswith(f"/fhir/Subscription/{body['id']}")
    assert "header" not in body["channel"]  # the subscriber's credentials are never read back
    [(path, headers, handshake)] = receiver.posts
    assert path == "/hook" and headers["Authorization"] == "Bearer subscriber-secret"
    assert headers["Content-Type"] == "application/json"
    assert handshake["type"] == "history" and kinds(receiver) == ["handshake"]
    assert parameter(handshake, "status")["valueCode"] == "requested"
    assert parameter(handshake, "events-since-subscription-start")["valueString"] == "0"
    assert handshake["entry"][0]["request"]["url"].endswith(f"Subscription/{body['id']}/$status")
    read = pas_client.get(f"/fhir/Subscription/{body['id']}").json()
    assert read["status"] == "active" and "header" not in read["channel"]
    status = pas_client.get(f"/fhir/Subscription/{body['id']}/$status").json()
    assert status["type"] == "searchset"
    status_parameters = {p["name"]: p for p in status["entry"][0]["resource"]["parameter"]}
    assert status_parameters["status"]["valueCode"] == "active"
    assert status_parameters["type"]["valueCode"] == "query-status"
    found = pas_client.get("/fhir/Subscription", params={"status": "active"}).json()
    assert [e["resource"]["id"] for e in found["entry"]] == [body["id"]]
    assert pas_client.delete(f"/fhir/Subscription/{body['id']}").status_code == 204
    assert pas_client.get(f"/fhir/Subscription/{body['id']}").status_code == 404


def test_a_handshake_the_endpoint_refuses_leaves_the_subscription_in_error(pas_client: TestClient,
                                                                           receiver: Receiver) -> None:
    receiver.statuses = [400]
    created = pas_client.post("/fhir/Subscription", json=subscription(receiver.url)).json()
    assert len(receiver.posts) == 1  # a 400 is not tried again
    assert pas_client.get(f"/fhir/Subscription/{created['id']}").json()["status"] == "error"


@pytest.mark.parametrize(("name", "change", "words", "where"), [
    ("kit-PAS_Subscription_example_v221_bad.json", None, "rest-hook channel only", "Subscription.channel.type"),
    ("kit-PAS_Subscription_example_bad_topic_and_criteria.json", None, "PAS topic", "Subscription.criteria"),
    ("kit-PAS_Subscription_example_id_only.json", None, "org-identifier=<submitter identifier>",
     "Subscription.criteria.extension.valueString"),
    ("good", lambda s: s["_criteria"]["extension"].append(copy.deepcopy(s["_criteria"]["extension"][0])),
     "exactly one filter", "Subscription.criteria.extension"),
    ("good", lambda s: s["channel"]["_payload"]["extension"][0].update(valueCode="empty"), "full-resource",
     "Subscription.channel.payload.extension"),
    ("good", lambda s: s["channel"].update(payload="application/xml"), "channel.payload",
     "Subscription.channel.payload"),
    ("good", lambda s: s["channel"].update(header=["Host: evil"]), "'Name: value'", "Subscription.channel.header"),
    ("good", lambda s: s.update(end="2001-01-01T00:00:00Z"), "in the past", "Subscription.end"),
    ("good", lambda s: s["channel"].update(endpoint="https://elsewhere.example/hook"),
     "COVREQ_SUBSCRIPTION_ENDPOINTS", "Subscription.channel.endpoint"),
])
def test_a_nonconformant_subscription_gets_a_400_operation_outcome_naming_the_element(
        pas_client: TestClient, receiver: Receiver, name: str, change: Any, words: str, where: str) -> None:
    resource = subscription(receiver.url) if name == "good" else fixture(name)
    if name != "good":
        resource["channel"]["endpoint"] = receiver.url
    if change:
        change(resource)
    response = pas_client.post("/fhir/Subscription", json=resource)
    assert response.status_code == 400, response.text
    issue = response.json()["issue"][0]
    assert response.json()["resourceType"] == "OperationOutcome"
    assert words in issue["diagnostics"] and issue["expression"] == [where]
    assert receiver.posts == []


def test_only_listed_endpoints_and_with_a_wildcard_only_public_https_hosts_are_notified(
        make_client: Callable[..., TestClient], receiver: Receiver, tmp_path: Path) -> None:
    client = make_client(database_url=f"sqlite:///{tmp_path / 'covreq.db'}", subscription_endpoints=("*",))
    for endpoint, words in ((receiver.url, "not one covreq may notify"),  # * is https only
                            ("https://127.0.0.1:9/hook", "non-public address"),
                            ("https://user:pw@example.org/hook", "without user information")):
        response = client.post("/fhir/Subscription", json=subscription(endpoint))
        assert response.status_code == 400 and words in response.json()["issue"][0]["diagnostics"], endpoint
    assert receiver.posts == []


def _created(client: TestClient, receiver: Receiver, **kwargs: Any) -> str:
    response = client.post("/fhir/Subscription", json=subscription(receiver.url, **kwargs))
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def test_a_decision_notifies_the_submitters_subscriptions_with_the_response_bundle(
        pas_client: TestClient, receiver: Receiver, caplog: pytest.LogCaptureFixture) -> None:
    full = _created(pas_client, receiver)
    response = fixture("kit-valid_pa_response_bundle.json")
    notifier = pas_client.app.state.pas_notifier
    with caplog.at_level(logging.INFO, logger="covreq.pas.subscriptions"):
        first = asyncio.run(notify_decision(notifier, response, [ORG]))
        second = asyncio.run(notify_decision(notifier, response, ["someone-else", ORG]))
    assert [(d.subscription, d.event, d.delivered) for d in first + second] == [(full, 1, True), (full, 2, True)]
    assert asyncio.run(notify_decision(notifier, response, ["someone-else"])) == []
    events = [body for _, _, body in receiver.posts[1:]]
    assert kinds(receiver) == ["handshake", "event-notification", "event-notification"]
    kit = fixture("kit-PAS_notification_example_full_resource.json")
    for number, event in enumerate(events, 1):
        assert event["type"] == kit["type"] and event["meta"] == kit["meta"]
        names = [p["name"] for p in event["entry"][0]["resource"]["parameter"]]
        assert names == [p["name"] for p in kit["entry"][0]["resource"]["parameter"]]
        assert parameter(event, "events-since-subscription-start")["valueString"] == str(number)
        focus = next(p for p in parameter(event, "notification-event")["part"] if p["name"] == "focus")
        [entry] = [e for e in event["entry"][1:] if e["fullUrl"] == focus["valueReference"]["reference"]]
        assert entry["resource"] == response and entry["request"]["method"] == "GET"  # the kit's 2.2.1 checks
        assert entry["resource"]["type"] == "collection"
        assert entry["resource"]["entry"][0]["resource"]["resourceType"] == "ClaimResponse"
    status = pas_client.get(f"/fhir/Subscription/{full}/$status").json()["entry"][0]["resource"]
    assert {p["name"]: p for p in status["parameter"]}["events-since-subscription-start"]["valueString"] == "2"
    logged = " ".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert "pas-notification" in logged and full in logged
    patient = next(e["resource"] for e in response["entry"] if e["resource"]["resourceType"] == "Patient")
    assert patient["name"][0]["family"] not in logged and ORG not in logged  # no PHI, no payload


def test_an_id_only_subscription_gets_the_focus_url_without_the_resource(pas_client: TestClient,
                                                                           receiver: Receiver) -> None:
    _created(pas_client, receiver, content="id-only")
    [delivery] = asyncio.run(notify_decision(pas_client.app.state.pas_notifier,
                                             fixture("kit-valid_pa_response_bundle.json"), [ORG]))
    event = receiver.posts[-1][2]
    assert delivery.delivered and len(event["entry"]) == 2
    assert "resource" not in event["entry"][1] and event["entry"][1]["fullUrl"].endswith(
        "/Bundle/ReferralAuthorizationResponseBundleExample")


def test_failed_deliveries_are_retried_a_bounded_number_of_times_and_redirects_never_followed(
        pas_client: TestClient, receiver: Receiver) -> None:
    subscription_id = _created(pas_client, receiver)
    notifier = pas_client.app.state.pas_notifier
    notifier.first_pause = 0.01
    response = fixture("kit-valid_pa_response_bundle.json")
    receiver.statuses = [503, 503]
    [retried] = asyncio.run(notify_decision(notifier, response, [ORG]))
    assert retried.delivered and len(receiver.posts) == 4  # handshake, 503, 503, 200
    receiver.statuses = [503, 503, 503]
    [failed] = asyncio.run(notify_decision(notifier, response, [ORG]))
    assert not failed.delivered and failed.outcome == "503" and len(receiver.posts) == 7
    assert pas_client.get(f"/fhir/Subscription/{subscription_id}").json()["status"] == "error"
    receiver.statuses = [302]
    [redirected] = asyncio.run(notify_decision(notifier, response, [ORG]))  # still notified while in error
    assert not redirected.delivered and redirected.outcome == "302" and len(receiver.posts) == 8
    [again] = asyncio.run(notify_decision(notifier, response, [ORG]))
    assert again.delivered and again.event == 4
    assert pas_client.get(f"/fhir/Subscription/{subscription_id}").json()["status"] == "active"


def test_a_response_that_is_not_a_pas_response_bundle_is_refused(pas_client: TestClient) -> None:
    claim_response = fixture("kit-valid_pa_response_bundle.json")["entry"][0]["resource"]
    with pytest.raises(ValueError, match="PAS response Bundle"):
        asyncio.run(notify_decision(pas_client.app.state.pas_notifier, claim_response, [ORG]))


def test_a_heartbeat_goes_once_per_period_whichever_worker_looks(pas_client: TestClient, receiver: Receiver) -> None:
    _created(pas_client, receiver, extension=[{"url": HEARTBEAT, "valueUnsignedInt": 60}])
    notifier = pas_client.app.state.pas_notifier
    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=61)
    assert [d.delivered for d in asyncio.run(notifier.heartbeats(later))] == [True]
    assert asyncio.run(notifier.heartbeats(later)) == []  # claimed: not sent twice
    assert asyncio.run(notifier.heartbeats(later + dt.timedelta(seconds=30))) == []
    assert len(asyncio.run(notifier.heartbeats(later + dt.timedelta(seconds=61)))) == 1
    assert kinds(receiver) == ["handshake", "heartbeat", "heartbeat"]
    assert parameter(receiver.posts[1][2], "status")["valueCode"] == "active"


def test_a_subscription_survives_a_restart(make_client: Callable[..., TestClient], receiver: Receiver,
                                           tmp_path: Path) -> None:
    settings = {"database_url": f"sqlite:///{tmp_path / 'covreq.db'}", "subscription_endpoints": (receiver.url,)}
    subscription_id = _created(make_client(**settings), receiver)
    restarted = make_client(**settings)
    assert restarted.get(f"/fhir/Subscription/{subscription_id}").json()["status"] == "active"
    [delivery] = asyncio.run(notify_decision(restarted.app.state.pas_notifier,
                                             fixture("kit-valid_pa_response_bundle.json"), [ORG]))
    assert delivery.delivered and delivery.event == 1


def test_a_subscription_made_on_one_replica_is_notified_by_another_with_postgresql(
        make_client: Callable[..., TestClient], receiver: Receiver, postgres_url: str) -> None:  # noqa: F811
    settings = {"database_url": postgres_url, "subscription_endpoints": (receiver.url,)}
    first, second = make_client(**settings), make_client(**settings)
    try:
        subscription_id = _created(first, receiver)
        assert second.get(f"/fhir/Subscription/{subscription_id}").json()["status"] == "active"
        [delivery] = asyncio.run(notify_decision(second.app.state.pas_notifier,
                                                 fixture("kit-valid_pa_response_bundle.json"), [ORG]))
        assert delivery.delivered and delivery.event == 1
        assert CONTENT in json.dumps(first.get(f"/fhir/Subscription/{subscription_id}").json())
    finally:
        database = Database.open(postgres_url)
        with database.engine.begin() as connection:
            connection.execute(delete(pas_subscription_org))
            connection.execute(delete(pas_subscription))
        database.close()


def test_an_update_replaces_the_filter_and_channel_and_hands_shake_again(pas_client: TestClient,
                                                                          receiver: Receiver) -> None:
    subscription_id = _created(pas_client, receiver)
    changed = subscription(receiver.url, content="id-only")
    changed["_criteria"]["extension"][0]["valueString"] = "org-identifier=N123456"
    updated = pas_client.put(f"/fhir/Subscription/{subscription_id}", json={**changed, "id": subscription_id})
    assert updated.status_code == 200 and updated.json()["status"] == "requested"
    assert kinds(receiver) == ["handshake", "handshake"]
    notifier, response = pas_client.app.state.pas_notifier, fixture("kit-valid_pa_response_bundle.json")
    assert asyncio.run(notify_decision(notifier, response, [ORG])) == []
    [delivery] = asyncio.run(notify_decision(notifier, response, ["N123456"]))
    assert delivery.delivered and "resource" not in receiver.posts[-1][2]["entry"][1]
    assert pas_client.put(f"/fhir/Subscription/{subscription_id}", json={**changed, "id": "other"}).status_code == 400
    assert pas_client.put("/fhir/Subscription/nothing-here", json={**changed, "id": "nothing-here"}).status_code == 404


def test_the_heartbeat_loop_of_a_running_service_sends_due_heartbeats_and_stops_with_it(
        pas_client: TestClient, receiver: Receiver) -> None:
    subscription_id = _created(pas_client, receiver, extension=[{"url": HEARTBEAT, "valueUnsignedInt": 60}])
    notifier = pas_client.app.state.pas_notifier
    assert asyncio.run(notifier.heartbeats(dt.datetime.now(dt.timezone.utc))) == []  # the handshake just went
    with notifier.store.database.engine.begin() as connection:  # a period has passed since
        connection.execute(update(pas_subscription).where(pas_subscription.c.id == subscription_id)
                           .values(last_sent_at=pas_subscription.c.last_sent_at - 61))

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.create_task(notifier.run_heartbeats(stop, tick=0.05))
        for _ in range(100):
            await asyncio.sleep(0.05)
            if len(receiver.posts) == 2:
                break
        stop.set()
        await asyncio.wait_for(loop, 5)

    asyncio.run(run())
    assert kinds(receiver) == ["handshake", "heartbeat"]


def test_the_capability_statement_offers_subscriptions_on_the_pas_topic(pas_client: TestClient) -> None:
    statement = pas_client.get("/fhir/metadata").json()
    [entry] = [r for r in statement["rest"][0]["resource"] if r["type"] == "Subscription"]
    assert entry["extension"][0]["valueCanonical"] == "http://hl7.org/fhir/us/davinci-pas/SubscriptionTopic/PASSubscriptionTopic"
    assert {i["code"] for i in entry["interaction"]} == {"create", "read", "update", "delete", "search-type"}
    assert r4.problems(statement, "CapabilityStatement") == []


def test_every_subscription_of_the_submitter_gets_the_event_each_retried_on_its_own(
        make_client: Callable[..., TestClient], tmp_path: Path) -> None:
    receivers = [Receiver(), Receiver()]
    try:
        client = make_client(database_url=f"sqlite:///{tmp_path / 'covreq.db'}",
                             subscription_endpoints=tuple(r.url for r in receivers))
        made = [_created(client, r) for r in receivers]
        notifier = client.app.state.pas_notifier
        notifier.first_pause = 0.3
        receivers[0].statuses = [503, 503]
        deliveries = asyncio.run(notify_decision(notifier, fixture("kit-valid_pa_response_bundle.json"), [ORG]))
        assert sorted((d.subscription, d.event, d.delivered) for d in deliveries) == sorted((m, 1, True) for m in made)
        assert [len(r.posts) for r in receivers] == [4, 2]
    finally:
        for r in receivers:
            loopback.stop(r.server)
