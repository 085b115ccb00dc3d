"""The Inferno CRD test kit's payer-server checks, replayed against covreq for each CRD version served.

The kit (inferno-framework/davinci-crd-test-kit, tests/fixtures/crd/SOURCES.md) POSTs the requests
of its "CRD Server RI" preset, kept here as ``inferno_*.json``, and checks (lib/davinci_crd_test_kit):
discovery (``discovery_endpoint_test``, ``discovery_services_validation_test``), the call
(``service_call_test``: 200 and JSON), the response (``service_response_validation_test`` and
``cards_validation``: cards and their required and optional fields, systemActions present for the
primary hooks, each action's fields), Coverage Information
(``coverage_information_system_action_received_test``: an action on a resource of the hook's order
types; ``coverage_information_system_action_validation_test``: type ``update``, the resource valid
for its profile, one coverage-assertion-id per Coverage and distinct ones across Coverages) and, across hooks, at least one External Reference card, one Instructions
card and one Coverage Information action (``server_required_card_response_validation_group``).

Each request is sent as the kit sends it, with the payer identified (the kit's Coverage names its
payor by reference only, and CRD hook-13 answers an unidentified payer with 400): once with no
``davinci-crd.requestedVersion`` (the kit validates CRD 2.0.1 and sends none) and once asking for
each version served. Every coverage-information repetition is checked against the profile of the
version answered (tests/service/crd_profiles.py), every resource against the R4 models. What this
cannot check is the kit's run of the HL7 validator on each updated order against CRD's request
profiles (US Core based): those are the client's own orders, returned as sent plus the extension.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Iterator

import pytest
from fastapi.testclient import TestClient
from fhir.resources.R4B import get_fhir_model_class

from crd_profiles import COVERAGE_INFORMATION, check_coverage_information
from service import Settings, create_app

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "crd"
#: the kit's requests per hook (SOURCES.md)
KIT_REQUESTS = {hook: [f"inferno_{hook.replace('-', '_')}_{n}.json" for n in (0, 1)]
                for hook in ("appointment-book", "order-select", "order-dispatch", "order-sign")}
#: hooks whose response must carry systemActions (service_response_validation_test)
SYSTEM_ACTION_HOOKS = {"appointment-book", "order-sign", "order-dispatch"}
#: resource types a Coverage Information action of each hook is on (coverage_information_system_action_received_test)
_ORDERS = {"DeviceRequest", "MedicationRequest", "NutritionOrder", "ServiceRequest", "VisionPrescription"}
TARGETS = {"appointment-book": {"Appointment"}, "order-sign": _ORDERS, "order-dispatch": _ORDERS,
           "order-select": _ORDERS}
#: the kit's order-select group makes its Coverage Information checks optional
OPTIONAL_COVERAGE_INFO = {"order-select"}
MEDICARE = {"system": "urn:covreq:payer", "value": "medicare"}  # service/payers.yaml
CPT = "http://www.ama-assn.org/go/cpt"
#: No code of the kit's requests is one the bundled Medicare rules list, so none of its answers
#: cites a policy (an External Reference card). The kit takes the requests to send as inputs: the
#: tester adds one that does, here the kit's order-sign ServiceRequest for CPT 15823
#: (blepharoplasty, Medicare's hospital OPD prior-authorization list) in an outpatient hospital.
DEMONSTRATION = ("order-sign", "inferno_order_sign_1.json")
VERSIONS = [None, "2.0", "2.1", "2.2"]


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """covreq as shipped: the bundled rules and payer mapping, the default CRD version."""
    audit = tmp_path_factory.mktemp("conformance") / "audit.jsonl"
    with TestClient(create_app(str(REPO / "rules"), Settings(audit_path=audit))) as test_client:
        yield test_client


def kit_request(name: str, version: str | None) -> dict[str, Any]:
    """A kit request with its Coverages' payor identified as Medicare, asking for ``version``."""
    request = copy.deepcopy(json.loads((FIXTURES / name).read_text(encoding="utf-8")))
    return identified(request, version)


def demonstration(version: str | None) -> dict[str, Any]:
    """``DEMONSTRATION``: the kit's order-sign ServiceRequest ordering CPT 15823 in a hospital OPD."""
    request = kit_request(DEMONSTRATION[1], version)
    order = request["context"]["draftOrders"]["entry"][0]["resource"]
    order["code"] = {"coding": [{"system": CPT, "code": "15823", "display": "Blepharoplasty, upper eyelid"}]}
    order["locationCode"] = [{"coding": [{"system": "https://www.cms.gov/Medicare/Coding/place-of-service-codes/"
                                                    "Place_of_Service_Code_Set", "code": "22"}]}]
    order["occurrenceDateTime"] = "2025-06-02"
    return request


def identified(request: dict[str, Any], version: str | None) -> dict[str, Any]:
    """``request`` with its Coverages' payor identified as Medicare, asking for ``version``."""
    for entry in request["prefetch"]["coverage"]["entry"]:
        for payor in entry["resource"]["payor"]:
            payor["identifier"] = MEDICARE
    if version:
        request["extension"] = {**request.get("extension", {}), "davinci-crd.requestedVersion": version}
    return request


def call(client: TestClient, hook: str, request: dict[str, Any]) -> dict[str, Any]:
    """service_call_test: POST the request to the hook's service; 200 and a JSON object."""
    service = next(s["id"] for s in client.get("/cds-services").json()["services"] if s["hook"] == hook)
    response = client.post(f"/cds-services/{service}", json=request)
    assert response.status_code == 200, f"{request['hookInstance']}: {response.text}"
    body = response.json()
    assert isinstance(body, dict)
    return body


def check_card(card: dict[str, Any]) -> None:
    """cards_validation: required and optional fields of one card, with their types and values."""
    assert isinstance(card["summary"], str) and len(card["summary"]) < 140
    assert card["indicator"] in ("info", "warning", "critical")
    assert isinstance(card["source"], dict) and isinstance(card["source"]["label"], str)
    topic = card["source"]["topic"]
    assert isinstance(topic, dict) and isinstance(topic["code"], str) and isinstance(topic["system"], str)
    for field, kind in (("uuid", str), ("detail", str), ("suggestions", list), ("overrideReasons", list),
                        ("links", list)):
        assert field not in card or isinstance(card[field], kind), field
    if card.get("suggestions"):
        assert card["selectionBehavior"] in ("at-most-one", "any")
    for reason in card.get("overrideReasons", []):
        assert all(isinstance(reason[f], str) for f in ("code", "system", "display"))
    for link in card.get("links", []):
        assert all(isinstance(link[f], str) for f in ("label", "type", "url"))
        assert link["url"].startswith(("http://", "https://"))
        assert link["type"] in ("absolute", "smart")
        assert not (link["type"] == "absolute" and link.get("appContext"))


def check_action(action: dict[str, Any]) -> None:
    """suggestion_actions_validation: type and description; a create or update carries a FHIR resource."""
    assert isinstance(action["type"], str) and isinstance(action["description"], str)
    assert action["type"] in ("create", "update", "delete")
    if action["type"] in ("create", "update"):
        resource = action["resource"]
        get_fhir_model_class(resource["resourceType"]).model_validate(resource)
    else:
        assert isinstance(action["resourceId"], str)


def check_coverage_info_action(action: dict[str, Any], version: str) -> None:
    """coverage_information_system_action_validation_test: an update whose coverage-information
    conforms to the version's profile, one coverage-assertion-id (and satisfied-pa-id) per
    Coverage and distinct ones across Coverages."""
    assert action["type"] == "update"
    ids: dict[str, set[str]] = {}
    pa_ids: dict[str, set[str]] = {}
    for extension in action["resource"]["extension"]:
        if extension["url"] != COVERAGE_INFORMATION:
            continue
        check_coverage_information(extension, version)
        subs = {sub["url"]: sub for sub in extension["extension"]}
        coverage = subs["coverage"]["valueReference"]["reference"]
        ids.setdefault(coverage, set()).add(subs["coverage-assertion-id"]["valueString"])
        if "satisfied-pa-id" in subs:
            pa_ids.setdefault(coverage, set()).add(subs["satisfied-pa-id"]["valueString"])
    assert ids and all(len(found) == 1 for found in ids.values())
    assert len(set().union(*ids.values())) == len(ids)
    assert all(len(found) <= 1 for found in pa_ids.values())


def is_coverage_info(action: dict[str, Any]) -> bool:
    """cards_identification: an action whose resource carries coverage-information."""
    return any(e.get("url") == COVERAGE_INFORMATION for e in action.get("resource", {}).get("extension", []))


def test_discovery(client: TestClient) -> None:
    """discovery_endpoint_test and discovery_services_validation_test."""
    response = client.get("/cds-services")
    assert response.status_code == 200
    services = response.json()["services"]
    assert isinstance(services, list) and {s["hook"] for s in services} == set(KIT_REQUESTS)
    for service in services:
        assert all(isinstance(service[f], str) and service[f] for f in ("hook", "description", "id"))
        assert isinstance(service.get("prefetch", {}), dict)
        assert service["extension"]["davinci-crd.version"] == [v for v in VERSIONS if v]


@pytest.mark.parametrize("version", VERSIONS, ids=lambda v: f"requested-{v}" if v else "default-2.0.1")
def test_every_payer_server_check_of_the_kit_passes(client: TestClient, version: str | None) -> None:
    answered = version or "2.0"
    cards: list[dict[str, Any]] = []
    coverage_info = 0
    for hook, names in KIT_REQUESTS.items():
        received = []
        requests = [kit_request(name, version) for name in names]
        if hook == DEMONSTRATION[0]:
            requests.append(demonstration(version))
        for request in requests:
            body = call(client, hook, request)
            assert isinstance(body["cards"], list)
            if hook in SYSTEM_ACTION_HOOKS:
                assert isinstance(body["systemActions"], list), "systemActions must be present"
            for card in body["cards"]:
                check_card(card)
            for action in body.get("systemActions", []):
                check_action(action)
            cards += body["cards"]
            received += [a for a in body.get("systemActions", []) if
                         a["resource"]["resourceType"] in TARGETS[hook] and is_coverage_info(a)]
        assert received or hook in OPTIONAL_COVERAGE_INFO, f"{hook}: no Coverage Information system action"
        for action in received:
            check_coverage_info_action(action, answered)
        coverage_info += len(received)
    assert coverage_info, "no Coverage Information system action across hooks"
    assert any(card.get("links") and all(link["type"] == "absolute" for link in card["links"]) for card in cards), \
        "no External Reference card across hooks"
    assert any(not card.get("links") and not card.get("suggestions") for card in cards), \
        "no Instructions card across hooks"


def medicare_coverage(cov_id: str, patient: str) -> dict[str, Any]:
    """A searchset of one active Medicare Part A Coverage whose payor carries Medicare's identifier."""
    return {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": {
        "resourceType": "Coverage", "id": cov_id, "status": "active", "beneficiary": {"reference": f"Patient/{patient}"},
        "payor": [{"reference": "Organization/cms", "identifier": MEDICARE}],
        "class": [{"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/coverage-class",
                                        "code": "plan"}]}, "value": "Medicare Part A"}]}}]}


@pytest.mark.parametrize(("name", "invalid"), [
    ("order_sign_hook_request.json", {"NutritionOrder/pureeddiet-simple", "MedicationRequest/smart-MedicationRequest-103"}),
    ("requestWithHydratedPrefetchBundle.json", {"DeviceRequest/24439"}),
])
def test_the_kits_and_the_ris_order_sign_examples_get_200_with_the_payer_identified(client: TestClient, name: str,
                                                                                     invalid: set[str]) -> None:
    """Neither example is valid R4 (SOURCES.md): each invalid order gets a card naming what is wrong
    and no systemAction, and the call is answered."""
    request = json.loads((FIXTURES / name).read_text(encoding="utf-8"))
    request["prefetch"] = {**(request.get("prefetch") or {}),
                           "coverage": medicare_coverage("cov-1", request["context"]["patientId"])}
    body = call(client, "order-sign", request)
    assert body["systemActions"] == []
    for card in body["cards"]:
        check_card(card)
    assert {c["extension"]["davinci-crd.associated-resource"][0]["reference"] for c in body["cards"]} == invalid
