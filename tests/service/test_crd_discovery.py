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
        assert versions == ["2.0", "2.1", "2.2"]  # major.minor only (CRD deviations.md: "i.e. 2.0")
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


MAPPING = Path(__file__).resolve().parent / "fixtures" / "payers.yaml"


@pytest.fixture()
def mapping() -> PayerMap:
    return PayerMap.load(MAPPING)


def test_payer_by_identifier_on_the_reference_or_the_organization(mapping: PayerMap) -> None:
    by_identifier = _coverage(payor=[{"identifier": {"system": "http://example.org/payer-ids", "value": "ACME-01"}}])
    assert mapping.identify(by_identifier, ResourceIndex([])).payer == "acme"
    organization = {"resourceType": "Organization", "id": "o1", "name": "Orphan Health",
                    "identifier": [{"system": "http://example.org/payer-ids", "value": "ORPHAN-01"}]}
    by_org = _coverage(payor=[{"reference": "https://ehr.example/fhir/Organization/o1"}])
    found = mapping.identify(by_org, ResourceIndex([organization]))
    assert (found.payer, found.label) == ("orphan", "Orphan Health")
    other_system = _coverage(payor=[{"identifier": {"system": "http://other.example/ids", "value": "ACME-01"}}])
    assert mapping.identify(other_system, ResourceIndex([])).payer is None


def test_payer_names_match_only_when_the_operator_opts_in(mapping: PayerMap, tmp_path: Path) -> None:
    by_name = _coverage(payor=[{"display": "ACME health plan"}])
    stranger = mapping.identify(by_name, ResourceIndex([]))
    assert (stranger.payer, stranger.label, stranger.identifiers) == (None, "ACME health plan", frozenset())
    opted_in = tmp_path / "payers.yaml"
    opted_in.write_text("match_by_name: true\n" + MAPPING.read_text(encoding="utf-8"), encoding="utf-8")
    assert PayerMap.load(opted_in).identify(by_name, ResourceIndex([])).payer == "acme"


def test_plan_from_the_coverage_class(mapping: PayerMap) -> None:
    plan_class = {"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/coverage-class",
                                       "code": "plan"}]}, "value": "GOLD"}
    coverage = _coverage(payor=[{"identifier": {"system": "http://example.org/payer-ids", "value": "ACME-01"}}],
                         **{"class": [plan_class]})
    assert mapping.identify(coverage, ResourceIndex([])).plan == "acme-gold"
    plan_class["value"] = "silver"
    assert mapping.identify(coverage, ResourceIndex([])).plan is None


@pytest.mark.parametrize(("text", "message"), [
    ("[]", "a list under 'payers'"),
    ("payers: [{label: x}]", "payers[0]: needs a string 'payer'"),
    ("payers: [{payer: x, identifiers: [{system: s}]}]", "needs 'system' and 'value'"),
    ("payers: [{payer: x, plans: [a]}]", "'plans' must map"),
    ("match_by_name: yes please\npayers: []", "'match_by_name' must be true or false"),
])
def test_a_bad_mapping_file_is_refused_with_its_place(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "payers.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=re.escape(message)):
        PayerMap.load(path)


#: CDS Hooks 2.0 prefetch tokens: root-level primitive context fields of the CRD hooks, and the user's ids
CDS_HOOKS_2_TOKENS = {"context.patientId", "context.encounterId", "context.userId", "userPractitionerId",
                      "userPractitionerRoleId", "userPatientId", "userRelatedPersonId"}


def test_prefetch_templates_are_cds_hooks_2_tokens_or_crds_standard_prefetch_verbatim(client, anchor) -> None:
    """found-29: the data covreq reads that CDS Hooks 2.0 tokens cannot name is asked for with CRD's
    standard prefetch expressions (the IG's CRDServices.json), exactly as the IG writes them."""
    standard = {s["hook"]: s["prefetch"] for s in anchor("CRDServices.json")["services"]}
    for service in client.get("/cds-services").json()["services"]:
        for key, template in service["prefetch"].items():
            tokens = set(re.findall(r"\{\{(.*?)\}\}", template))
            assert tokens, (service["hook"], key)
            assert tokens <= CDS_HOOKS_2_TOKENS or template == standard[service["hook"]][key], (service["hook"], key)


@pytest.mark.parametrize(("hook", "keys"), [
    ("order-sign", {"practitionerRoles", "practitioners", "organizations", "locations", "medications"}),
    ("order-select", {"practitionerRoles", "practitioners", "organizations", "locations", "medications"}),
    ("appointment-book", {"serviceRequests", "deviceRequests", "medicationRequests", "practitionerRoles",
                          "practitioners", "organizations", "locations"}),
    ("order-dispatch", {"serviceRequests", "deviceRequests", "medicationRequests", "practitionerRoles",
                        "practitioners", "organizations", "locations"}),
])
def test_what_covreq_reads_of_the_orders_is_asked_for_in_prefetch(client, hook: str, keys: set[str]) -> None:
    """The requesters and performers (NPI), Locations (place of service, state), Medications and
    the orders an Appointment is based on or a dispatch names are read: discovery asks for them."""
    (service,) = [s for s in client.get("/cds-services").json()["services"] if s["hook"] == hook]
    assert keys <= set(service["prefetch"])
