"""The bundled payer mapping (service/payers.yaml) sends each bundled payer's Coverage to its rules."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.service.crd_calls import assert_ok, assert_outcome, by_code, order_sign, post, repetitions, service_request, value

REPO = Path(__file__).resolve().parents[2]


#: the identifier system of the bundled mapping's placeholder identifiers (service/payers.yaml)
COVREQ_PAYER = "urn:covreq:payer"


def coverage(payer: str, plan: str, payer_id: str | None = None) -> dict:
    """A searchset Bundle with one active Coverage naming ``payer`` (identified as ``payer_id`` in
    the bundled mapping's system when given) and plan class ``plan``."""
    payor: dict = {"display": payer}
    if payer_id:
        payor["identifier"] = {"system": COVREQ_PAYER, "value": payer_id}
    return {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": {
        "resourceType": "Coverage", "id": "C1", "status": "active", "beneficiary": {"reference": "Patient/p1"},
        "payor": [payor],
        "class": [{"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/coverage-class",
                                         "code": "plan"}]}, "value": plan}]}}]}


@pytest.mark.parametrize("payer, payer_id, plan, code, pos, pa_needed", [
    ("UnitedHealthcare", "unitedhealthcare", "Commercial", "70553", "11", "auth-needed"),
    ("UnitedHealthcare", "unitedhealthcare", "Medicare Advantage", "70553", "11", "no-auth"),
    ("Cigna", "cigna", "Commercial", "78452", "11", "auth-needed"),
    ("Florida Blue", "florida-blue", "BlueCare HMO", "95810", "11", "auth-needed"),
    ("Florida Blue", "florida-blue", "ASO", "95810", "11", "no-auth"),
])
def test_each_bundled_payer_is_answered_by_its_own_rules(make_client, crd, payer: str, payer_id: str, plan: str,
                                                         code: str, pos: str, pa_needed: str) -> None:
    client = make_client(REPO / "rules", payers=REPO / "service" / "payers.yaml")
    order = service_request("o1", code, pos=pos)
    order["occurrenceDateTime"] = "2024-06-03"
    body = assert_ok(post(client, order_sign(order, prefetch={"coverage": coverage(payer, plan, payer_id)})), crd)
    subs = by_code(repetitions(body, "ServiceRequest/o1", crd), crd)[code]
    assert value(subs, "pa-needed") == [pa_needed]


@pytest.mark.parametrize("payer", ["Medicare", "UnitedHealthcare", "Cigna", "Florida Blue"])
def test_the_bundled_mapping_does_not_answer_a_coverage_that_only_names_its_payer(make_client, payer: str) -> None:
    """Regression (issue 22, item 8): the bundled file shipped ``match_by_name: true``, so a Coverage
    whose payor said only "Medicare" was answered; a name is not an identity (CRD hook-13)."""
    client = make_client(REPO / "rules", payers=REPO / "service" / "payers.yaml")
    order = service_request("o1", "15823", pos="22")
    response = post(client, order_sign(order, prefetch={"coverage": coverage(payer, "Commercial")}))
    issue = assert_outcome(response, 400, "prefetch.coverage")
    assert "the payor carries no identifier" in issue["diagnostics"]
