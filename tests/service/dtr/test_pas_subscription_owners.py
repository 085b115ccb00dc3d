"""PAS subscriptions under SMART Backend Services: each belongs to the client that made it (the PAS
IG: only the sending system creates or changes its subscriptions), and the scopes are enforced."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import pytest
from fastapi.testclient import TestClient

from test_dtr_smart import FHIR_BASE, assertion, bearer, keys, public_jwk, token_key, token_request  # noqa: F401
from test_pas_subscriptions import Receiver, receiver, subscription  # noqa: F401 - receiver: the loopback endpoint


@pytest.fixture()
def client(make_dtr_client: Callable[..., TestClient], keys: dict[str, Any], token_key: Path,  # noqa: F811
           receiver: Receiver, tmp_path: Path) -> TestClient:
    inline = json.dumps({"keys": [{**public_jwk(keys["rsa"], "rsa-1"), "alg": "RS384"}]})
    registration = tmp_path / "smart-clients.yaml"
    registration.write_text(f"""clients:
  - client_id: clinic-a
    jwks: {inline}
    scopes: [system/Subscription.cruds]
  - client_id: clinic-b
    jwks: {inline}
    scopes: [system/Subscription.cruds]
  - client_id: reader
    jwks: {inline}
    scopes: [system/Subscription.rs]
""")
    return make_dtr_client(fhir_base=FHIR_BASE, smart_clients=registration, smart_token_key=token_key,
                           smart_loopback_http=True, database_url=f"sqlite:///{tmp_path / 'covreq.db'}",
                           subscription_endpoints=(receiver.url,))


def _token(client: TestClient, keys: dict[str, Any], client_id: str, scope: str) -> dict[str, str]:  # noqa: F811
    reply = token_request(client, assertion(keys, client_id=client_id), scope)
    assert reply.status_code == 200, reply.text
    return bearer(reply.json()["access_token"])


def test_a_subscription_is_seen_and_changed_only_by_the_client_that_made_it(
        client: TestClient, keys: dict[str, Any], receiver: Receiver) -> None:  # noqa: F811
    a = _token(client, keys, "clinic-a", "system/Subscription.cruds")
    b = _token(client, keys, "clinic-b", "system/Subscription.cruds")
    assert client.post("/fhir/Subscription", json=subscription(receiver.url)).status_code == 401
    made = client.post("/fhir/Subscription", json=subscription(receiver.url), headers=a)
    assert made.status_code == 201, made.text
    path = f"/fhir/Subscription/{made.json()['id']}"
    assert client.get(path, headers=a).json()["status"] == "active"
    assert client.get(f"{path}/$status", headers=a).status_code == 200
    for method in ("GET", "DELETE"):
        assert client.request(method, path, headers=b).status_code == 404
    assert client.request("GET", f"{path}/$status", headers=b).status_code == 404
    assert client.put(path, json={**subscription(receiver.url), "id": made.json()["id"]}, headers=b).status_code == 404
    assert client.get("/fhir/Subscription", headers=b).json()["total"] == 0
    assert client.get("/fhir/Subscription", headers=a).json()["total"] == 1
    assert client.delete(path, headers=a).status_code == 204


def test_a_client_without_the_create_scope_is_refused(client: TestClient, keys: dict[str, Any],  # noqa: F811
                                                      receiver: Receiver) -> None:
    reader = _token(client, keys, "reader", "system/Subscription.rs")
    refused = client.post("/fhir/Subscription", json=subscription(receiver.url), headers=reader)
    assert refused.status_code == 403 and "insufficient_scope" in refused.headers["www-authenticate"]
    assert receiver.posts == []
