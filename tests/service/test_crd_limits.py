"""Bounded work per CDS Hooks call: orders, Coverages and billing codes are capped with a 413 that
says which limit, before any FHIR is parsed; caller strings are cut before they are logged."""
from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from crd_calls import CPT, acme_coverage, assert_ok, assert_outcome, order_sign, post, service_request

from service.crd import routes
from service.crd.envelope import read_envelope


def test_300_orders_and_300_coverages_are_refused_with_413_naming_the_limit(client) -> None:
    coverages = acme_coverage()
    coverages["entry"] *= 300
    request = order_sign(*(service_request(f"s{n}", "15823") for n in range(300)), prefetch={"coverage": coverages})
    issue = assert_outcome(post(client, request), 413, "context.draftOrders")
    assert issue["code"] == "too-costly"
    assert "carries 300 orders; this service answers at most 100 per call (COVREQ_CRD_MAX_ORDERS)" in issue["diagnostics"]


def test_too_many_coverages_are_refused_with_413(client) -> None:
    coverages = acme_coverage()
    coverages["entry"] = [{"resource": {**coverages["entry"][0]["resource"], "id": f"c{n}"}} for n in range(21)]
    issue = assert_outcome(post(client, order_sign(service_request("s1", "15823"), prefetch={"coverage": coverages})),
                           413, "prefetch")
    assert "21 Coverages" in issue["diagnostics"] and "COVREQ_CRD_MAX_COVERAGES" in issue["diagnostics"]


def test_too_many_billing_codes_on_one_order_are_refused_with_413(client) -> None:
    order = service_request("s1", "15823")
    order["code"]["coding"] = [{"system": CPT, "code": str(10000 + n)} for n in range(51)]
    issue = assert_outcome(post(client, order_sign(order)), 413, "ServiceRequest/s1")
    assert "51 billing codes" in issue["diagnostics"]


def test_the_limits_are_the_operators_to_raise(make_client, crd) -> None:
    client = make_client(crd_max_orders=150)
    request = order_sign(*(service_request(f"s{n}", "15823", pos="22") for n in range(150)))
    assert len(assert_ok(post(client, request), crd)["systemActions"]) == 150


def test_a_long_hook_instance_is_cut_before_it_is_logged(client, caplog, crd) -> None:
    request = order_sign(service_request("s1", "15823"))
    request["hookInstance"] = "x" * 10_000
    with caplog.at_level(logging.INFO, logger="covreq.crd"):
        assert_ok(post(client, request), crd)
    (record,) = [r for r in caplog.records if getattr(r, "event", None) == "crd"]
    assert record.hookInstance == "x" * 128


def test_a_small_call_is_answered_on_the_event_loop_and_a_large_one_in_the_threadpool(
        client, crd, monkeypatch) -> None:
    on_loop: list[bool] = []

    def reading(*args: Any) -> Any:
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # a threadpool thread runs no event loop
            on_loop.append(False)
        else:
            on_loop.append(True)
        return read_envelope(*args)
    monkeypatch.setattr(routes, "read_envelope", reading)
    small = order_sign(*(service_request(f"s{n}", "15823", pos="22") for n in range(2)))
    large = order_sign(*(service_request(f"s{n}", "15823", pos="22") for n in range(100)))
    assert len(json.dumps(small)) <= routes.INLINE_BYTES < len(json.dumps(large))
    assert len(assert_ok(post(client, small), crd)["systemActions"]) == 2
    assert len(assert_ok(post(client, large), crd)["systemActions"]) == 100
    assert on_loop == [True, False]
