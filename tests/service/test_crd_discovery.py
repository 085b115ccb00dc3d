"""CDS Hooks discovery and the payer mapping."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from service.fhir.index import ResourceIndex
from service.crd.payers import PayerMap

HOOKS = {"order-select", "order-sign", "order-dispatch", "appointment-book"}


def test_discovery_lists_the_crd_services_like_the_ig(client, anchor) -> None:
    response = client.get("/cds-services")
    assert response.status_code == 200
    body = response.json()
    assert body["extension"]["covreq.ruleset"] == response.headers["x-covreq-ruleset"]
    services = body["services"]
    assert {s["hook"] for s in services} == HOOKS
    ig = {s["hook"]: s for s in anchor("CRDServices.json")["services"]}
    for service in services:
        assert set(service) == set(ig[service["hook"]])  # hook, title, description, id, prefetch, extension
        assert service["id"] == f"{service['hook']}-crd" and service["description"]
        versions = service["extension"]["davinci-crd.version"]
        assert versions and all(re.fullmatch(r"[1-9]\d*\.[1-9]\d*", v) for v in versions)
        options = {o["code"]: o for o in service["extension"]["davinci-crd.configuration-options"]}
        assert options["coverage-info"]["type"] == "boolean" and options["coverage-info"]["default"] is True
        assert options["max-cards"]["type"] == "integer" and options["max-cards"]["default"] == 10
        assert all({"code", "type", "name", "description"} <= set(o) for o in options.values())
        assert service["prefetch"]["coverage"] == ig[service["hook"]]["prefetch"]["coverage"]


def test_each_advertised_service_answers(client) -> None:
    for service in client.get("/cds-services").json()["services"]:
        response = client.post(f"/cds-services/{service['id']}", json={"hook": service["hook"]})
        assert response.status_code == 400  # reached the service: a hook call without hookInstance


def _coverage(**fields) -> dict:
    return {"resourceType": "Coverage", "id": "c", "status": "active", **fields}


@pytest.fixture()
def mapping() -> PayerMap:
    return PayerMap.load(Path(__file__).resolve().parent / "fixtures" / "payers.yaml")


def test_payer_by_identifier_name_and_organization(mapping: PayerMap) -> None:
    by_identifier = _coverage(payor=[{"identifier": {"system": "http://example.org/payer-ids", "value": "ACME-01"}}])
    assert mapping.identify(by_identifier, ResourceIndex([])).payer == "acme"
    by_name = _coverage(payor=[{"display": "ACME health plan"}])
    assert mapping.identify(by_name, ResourceIndex([])).payer == "acme"
    organization = {"resourceType": "Organization", "id": "o1", "name": "Orphan Health"}
    by_org = _coverage(payor=[{"reference": "https://ehr.example/fhir/Organization/o1"}])
    found = mapping.identify(by_org, ResourceIndex([organization]))
    assert (found.payer, found.label) == ("orphan", "Orphan Health")
    stranger = mapping.identify(_coverage(payor=[{"display": "Someone Else"}]), ResourceIndex([]))
    assert (stranger.payer, stranger.label) == (None, "Someone Else")


def test_plan_from_the_coverage_class(mapping: PayerMap) -> None:
    plan_class = {"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/coverage-class",
                                       "code": "plan"}]}, "value": "GOLD"}
    coverage = _coverage(payor=[{"display": "Acme Health Plan"}], **{"class": [plan_class]})
    assert mapping.identify(coverage, ResourceIndex([])).plan == "acme-gold"
    plan_class["value"] = "silver"
    assert mapping.identify(coverage, ResourceIndex([])).plan is None


@pytest.mark.parametrize(("text", "message"), [
    ("[]", "a list under 'payers'"),
    ("payers: [{label: x}]", "payers[0]: needs a string 'payer'"),
    ("payers: [{payer: x, identifiers: [{system: s}]}]", "needs 'system' and 'value'"),
    ("payers: [{payer: x, plans: [a]}]", "'plans' must map"),
])
def test_a_bad_mapping_file_is_refused_with_its_place(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "payers.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=re.escape(message)):
        PayerMap.load(path)
