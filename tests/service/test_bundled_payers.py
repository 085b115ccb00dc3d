"""The bundled payer mapping (service/payers.yaml) sends each bundled payer's Coverage to its rules."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.service.crd_calls import assert_ok, by_code, order_sign, post, repetitions, service_request, value

REPO = Path(__file__).resolve().parents[2]


def coverage(payer: str, plan: str) -> dict:
    """A searchset Bundle with one active Coverage naming ``payer`` and plan class ``plan``."""
    return {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": {
        "resourceType": "Coverage", "id": "C1", "status": "active", "beneficiary": {"reference": "Patient/p1"},
        "payor": [{"display": payer}],
        "class": [{"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/coverage-class",
                                         "code": "plan"}]}, "value": plan}]}}]}


@pytest.mark.parametrize("payer, plan, code, pos, pa_needed", [
    ("UnitedHealthcare", "Commercial", "70553", "11", "auth-needed"),
    ("UnitedHealthcare", "Medicare Advantage", "70553", "11", "no-auth"),
    ("Cigna", "Commercial", "78452", "11", "auth-needed"),
    ("Florida Blue", "BlueCare HMO", "95810", "11", "auth-needed"),
    ("Florida Blue", "ASO", "95810", "11", "no-auth"),
])
def test_each_bundled_payer_is_answered_by_its_own_rules(make_client, crd, payer: str, plan: str, code: str,
                                                         pos: str, pa_needed: str) -> None:
    client = make_client(REPO / "rules", payers=REPO / "service" / "payers.yaml")
    order = service_request("o1", code, pos=pos)
    order["occurrenceDateTime"] = "2024-06-03"
    body = assert_ok(post(client, order_sign(order, prefetch={"coverage": coverage(payer, plan)})), crd)
    subs = by_code(repetitions(body, "ServiceRequest/o1", crd), crd)[code]
    assert value(subs, "pa-needed") == [pa_needed]
