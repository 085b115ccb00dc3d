"""Bounded work per DTR call (issue 24, item 7): orders, forms and output bytes are capped with a
413 OperationOutcome naming the setting, and the operations run in worker threads, off the event
loop, on a limiter of their own."""
from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import anyio.from_thread
import anyio.to_thread
import pytest
from dtr_helpers import bundles, package_request, response_of, service_request
from fastapi.responses import JSONResponse
from fastapi.testclient import TestClient

from service.dtr import package as package_module
from service.dtr import routes
from service.dtr.limits import DtrLimits
from service.settings import Settings

PACKAGE, NEXT = "/fhir/Questionnaire/$questionnaire-package", "/fhir/Questionnaire/$next-question"


def _refusal(reply: Any, setting: str) -> dict[str, Any]:
    assert reply.status_code == 413, reply.text[:300]
    issue = reply.json()["issue"][0]
    assert issue["code"] == "too-costly" and setting in issue["diagnostics"]
    return issue  # type: ignore[no-any-return]


def _audited(tmp_path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]


def test_regression_100_orders_came_back_as_1_78_mb(dtr_client: TestClient, tmp_path: Path) -> None:
    body = package_request(*(service_request(order_id=f"sr-{n}") for n in range(100)))
    issue = _refusal(dtr_client.post(PACKAGE, json=body), "COVREQ_DTR_MAX_ORDERS")
    assert "carries 100 orders; this service packages at most 20 per call" in issue["diagnostics"]
    assert issue["expression"] == ["Parameters.parameter"]
    (record,) = _audited(tmp_path)
    assert record["status"] == 413 and record["operation"] == "questionnaire-package"


def test_the_default_limits_still_package_20_orders(dtr_client: TestClient) -> None:
    body = package_request(*(service_request(order_id=f"sr-{n}") for n in range(20)))
    reply = dtr_client.post(PACKAGE, json=body)
    assert reply.status_code == 200 and len(bundles(reply.json())) == 20
    assert len(reply.content) <= Settings().dtr_max_response_bytes


def test_more_forms_than_allowed_are_a_413_once_the_first_past_the_limit_is_made(
        make_dtr_client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[int] = []
    real_page = package_module.page
    monkeypatch.setattr(package_module, "page", lambda *args: made.append(1) or real_page(*args))
    client = make_dtr_client(dtr_max_forms=3)
    body = package_request(*(service_request(order_id=f"sr-{n}") for n in range(20)))
    issue = _refusal(client.post(PACKAGE, json=body), "COVREQ_DTR_MAX_FORMS")
    assert "needs more than 3 forms" in issue["diagnostics"]
    assert len(made) == 4, "the work stops at the first form past the limit, not after all 20"
    asked = package_request(service_request(), questionnaires=("a", "b", "c", "d"))
    _refusal(client.post(PACKAGE, json=asked), "COVREQ_DTR_MAX_FORMS")  # refused before any work


def test_an_answer_larger_than_allowed_is_a_413(make_dtr_client: Any, tmp_path: Path) -> None:
    keys = tmp_path / "dtr-keys.yaml"  # one key for every client, so each verifies the others' forms
    keys.write_text("active: k1\nkeys:\n  k1: " + "s" * 32 + "\n")
    client = make_dtr_client(dtr_max_response_bytes=10_000, dtr_keys=keys)
    issue = _refusal(client.post(PACKAGE, json=package_request(service_request())), "COVREQ_DTR_MAX_RESPONSE_BYTES")
    assert "larger than 10000 bytes" in issue["diagnostics"]
    unbounded = make_dtr_client(dtr_keys=keys)
    start = response_of(bundles(unbounded.post(PACKAGE, json=package_request(service_request())).json())[0])
    size = len(unbounded.post(NEXT, json=start).content)
    assert make_dtr_client(dtr_max_response_bytes=size, dtr_keys=keys).post(NEXT, json=start).status_code == 200
    _refusal(make_dtr_client(dtr_max_response_bytes=size - 1, dtr_keys=keys).post(NEXT, json=start),
             "COVREQ_DTR_MAX_RESPONSE_BYTES")


def test_regression_dtr_operations_ran_on_the_event_loop(dtr_client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    on_loop: list[bool] = []

    def recording(work: Any) -> Any:
        def run(*args: Any, **kwargs: Any) -> Any:
            try:
                asyncio.get_running_loop()
            except RuntimeError:  # a worker thread runs no event loop
                on_loop.append(False)
                default_threads = anyio.from_thread.run_sync(
                    lambda: anyio.to_thread.current_default_thread_limiter().borrowed_tokens)
                assert default_threads == 0, "DTR work takes none of the threads /healthz and the others run in"
            else:
                on_loop.append(True)
            return work(*args, **kwargs)
        return run
    monkeypatch.setattr(routes, "package", recording(routes.package))
    monkeypatch.setattr(routes, "next_question", recording(routes.next_question))
    reply = dtr_client.post(PACKAGE, json=package_request(service_request()))
    assert reply.status_code == 200
    assert dtr_client.post(NEXT, json=response_of(bundles(reply.json())[0])).status_code == 200
    assert on_loop == [False, False]


def test_an_answer_orjson_cannot_write_is_measured_and_written_all_the_same() -> None:
    answer = {"resourceType": "Parameters", "parameter": [{"name": "return", "resource": {"n": 2 ** 70}}]}
    assert DtrLimits().check_answer(answer) == JSONResponse(answer).body  # orjson refuses integers past 64 bits
