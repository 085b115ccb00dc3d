"""The examples of docs/pas-subscriptions.md are what covreq sends and reads."""
from __future__ import annotations

import asyncio
import inspect
import json
import re
import shlex
from pathlib import Path
from typing import Any, Callable

from fastapi.testclient import TestClient

from service.pas.notifier import notify_decision
from service.settings import Settings
from test_pas_subscriptions import ORG, Receiver, fixture, receiver  # noqa: F401 - the receiver fixture

TEXT = (Path(__file__).resolve().parents[2] / "docs" / "pas-subscriptions.md").read_text(encoding="utf-8")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_INSTANT = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z")


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", TEXT, flags=re.S)


def _masked(value: Any) -> Any:
    return json.loads(_INSTANT.sub("<instant>", _UUID.sub("<uuid>", json.dumps(value))))


def _client(make_client: Callable[..., TestClient], receiver: Receiver, tmp_path: Path) -> TestClient:  # noqa: F811
    return make_client(database_url=f"sqlite:///{tmp_path / 'covreq.db'}", subscription_endpoints=(receiver.url,),
                       fhir_base="https://payer.example.org/fhir")


def _documented_subscription(endpoint: str, content: str | None = None) -> dict[str, Any]:
    resource = json.loads(_blocks("json")[0])
    resource["channel"]["endpoint"] = endpoint
    if content:
        resource["channel"]["_payload"]["extension"][0]["valueCode"] = content
    return resource


def test_the_documented_setting_is_read_from_the_environment() -> None:
    [line] = [l for l in _blocks("sh")[0].splitlines() if l.strip()]
    variable, _, rest = line.partition("=")
    value = shlex.split(rest)[0]
    assert Settings.from_env({variable: value}).subscription_endpoints == (value,)


def test_the_documented_subscription_is_created_and_gets_the_documented_handshake(
        make_client: Callable[..., TestClient], receiver: Receiver, tmp_path: Path) -> None:  # noqa: F811
    client = _client(make_client, receiver, tmp_path)
    created = client.post("/fhir/Subscription", json=_documented_subscription(receiver.url))
    assert created.status_code == 201, created.text
    [(_, headers, handshake)] = receiver.posts
    assert headers["Authorization"] == "Bearer token-the-ehr-gave-the-payer"
    assert headers["Content-Type"] == "application/fhir+json"
    assert _masked(handshake) == _masked(json.loads(_blocks("json")[1]))


def test_the_documented_id_only_event_is_what_a_decision_sends(
        make_client: Callable[..., TestClient], receiver: Receiver, tmp_path: Path) -> None:  # noqa: F811
    client = _client(make_client, receiver, tmp_path)
    assert client.post("/fhir/Subscription", json=_documented_subscription(receiver.url, "id-only")).status_code == 201
    asyncio.run(notify_decision(client.app.state.pas_notifier, fixture("kit-valid_pa_response_bundle.json"), [ORG]))
    assert _masked(receiver.posts[-1][2]) == _masked(json.loads(_blocks("json")[2]))


def test_the_documented_signature_is_notify_decisions() -> None:
    [line] = [l for l in _blocks("python")[0].splitlines() if l.strip()]
    assert line == f"async def notify_decision{inspect.signature(notify_decision)}".replace("'", "")
