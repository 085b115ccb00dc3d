"""Incoming FHIR is checked as R4 (fhir.resources' R4B models, which read R4 for every resource
covreq reads): other versions and broken shapes are a 400 naming the path; a primary hook never
passes over a resource it cannot answer for; one malformed code leaves the rest answered."""
from __future__ import annotations

import copy
import json
import subprocess
import sys
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crd_calls import (CPT, acme_coverage, assert_ok, assert_outcome, by_code, order_sign, post,
                       repaired_inferno_order_sign, repetitions, service_request, value)
from service.fhir import r4

SUBJECT = {"reference": "Patient/p1"}
CONCEPT = {"coding": [{"system": CPT, "code": "92015"}]}
#: an R4 example of each request type CRD answers for that the CRD examples do not carry
MORE_R4 = [
    {"resourceType": "VisionPrescription", "id": "v1", "status": "draft", "created": "2026-01-02",
     "patient": SUBJECT, "dateWritten": "2026-01-02", "prescriber": {"reference": "Practitioner/p1"},
     "lensSpecification": [{"product": CONCEPT, "eye": "right"}]},
    {"resourceType": "CommunicationRequest", "id": "c1", "status": "draft", "subject": SUBJECT},
    {"resourceType": "Condition", "id": "k1", "subject": SUBJECT, "code": CONCEPT},
    {"resourceType": "Medication", "id": "m1", "code": CONCEPT},
    {"resourceType": "Device", "id": "d1", "type": CONCEPT},
]


def every_resource(request: dict[str, Any]) -> list[dict[str, Any]]:
    """The orders and prefetch resources of a hook call, Bundles opened."""
    found = []
    for value_ in [*request["context"].values(), *(request.get("prefetch") or {}).values()]:
        if isinstance(value_, dict) and "resourceType" in value_:
            found += [e["resource"] for e in value_.get("entry", [])] if value_["resourceType"] == "Bundle" else [value_]
    return found


def test_the_r4b_models_read_every_r4_resource_covreq_reads(anchor) -> None:
    resources = [*every_resource(anchor("CRDServiceRequest.json")), *every_resource(anchor("CRDServiceRequest2.json")),
                 *every_resource(anchor("CRDServiceRequest4.json")),
                 *every_resource(repaired_inferno_order_sign(anchor("order_sign_hook_request.json"))), *MORE_R4]
    kinds = {r["resourceType"] for r in resources}
    assert {"ServiceRequest", "MedicationRequest", "NutritionOrder", "Appointment", "VisionPrescription",
            "CommunicationRequest", "Coverage", "Patient", "Encounter", "Location", "Practitioner",
            "PractitionerRole", "Organization", "Condition", "Medication", "Device"} <= kinds
    for resource in resources:
        assert r4.problems(resource, resource["resourceType"]) == [], resource["resourceType"]


def test_after_prepare_checking_the_anchors_imports_no_further_model(anchor) -> None:
    resources = [*every_resource(anchor("CRDServiceRequest.json")), *every_resource(anchor("CRDServiceRequest2.json")),
                 *every_resource(anchor("CRDServiceRequest4.json")), *MORE_R4]
    script = ("import json, sys\nfrom service.fhir import r4\nr4.prepare()\nbefore = set(sys.modules)\n"
              "for resource in json.loads(sys.stdin.read()):\n    assert r4.problems(resource, 'x') == []\n"
              "print(sorted(m for m in set(sys.modules) - before if m.startswith('fhir')))")
    fresh = subprocess.run([sys.executable, "-c", script], input=json.dumps(resources), capture_output=True,
                           text=True, check=True)  # a fresh interpreter: nothing imported by other tests
    assert json.loads(fresh.stdout.replace("'", '"')) == []


def test_the_ri_request_with_device_request_insurance_as_an_object_gets_no_update(client, anchor, crd) -> None:
    request = anchor("requestWithHydratedPrefetchBundle.json")
    request["prefetch"]["coverage"] = acme_coverage("1234")
    body = assert_ok(post(client, request), crd)
    assert body["systemActions"] == [] and "resource.insurance`: must be a list" in body["cards"][0]["detail"]


@pytest.mark.parametrize(("change", "path", "says"), [
    (lambda c: c.update(kind="insurance", insurer={"reference": "Organization/o"}),  # an R5 Coverage
     "prefetch.coverage.entry[0].resource", "not an element of this R4 resource"),
    (lambda c: c.update(status="enforced"), "prefetch.coverage.entry[0].resource.status",
     "'enforced' is not one of active, cancelled, draft, entered-in-error"),
    (lambda c: c.update(period={"start": "2026-13-40"}), "prefetch.coverage.entry[0].resource.period.start", ""),
])
def test_a_coverage_that_is_not_r4_is_a_400_naming_the_path(client, change, path: str, says: str) -> None:
    prefetch = {"coverage": acme_coverage()}
    change(prefetch["coverage"]["entry"][0]["resource"])
    issue = assert_outcome(post(client, order_sign(service_request("s1", "15823"), prefetch=prefetch)), 400)
    assert issue["expression"][0].startswith(path) and says in issue["diagnostics"]


def test_an_stu3_medication_request_gets_a_card_naming_its_stu3_element_and_no_update(client, crd) -> None:
    order = {"resourceType": "MedicationRequest", "id": "m1", "status": "draft", "intent": "order", "subject": SUBJECT,
             "medicationCodeableConcept": CONCEPT, "context": {"reference": "Encounter/e1"}}  # STU3's context
    body = assert_ok(post(client, order_sign(order)), crd)
    assert body["systemActions"] == [] and "context.draftOrders.entry[0].resource.context" in body["cards"][0]["detail"]


def test_a_resource_type_crd_does_not_answer_for_is_a_400_in_a_primary_hook(client, crd) -> None:
    procedure = {"resourceType": "Procedure", "id": "x", "status": "preparation", "subject": SUBJECT}
    issue = assert_outcome(post(client, order_sign(service_request("s1", "15823"), procedure)), 400,
                           "context.draftOrders.entry[1].resource")
    assert "'Procedure' is not a request resource CRD answers for" in issue["diagnostics"]
    selecting = order_sign(service_request("s1", "15823"), procedure)
    selecting["hook"], selecting["context"]["selections"] = "order-select", ["ServiceRequest/s1"]
    assert [a["resource"]["id"] for a in assert_ok(post(client, selecting), crd)["systemActions"]] == ["s1"]


@pytest.mark.parametrize("kind", [["ServiceRequest"], {"type": "ServiceRequest"}, 7, None])
def test_regression_an_order_whose_resource_type_is_not_a_string_is_a_400_not_a_500(client, kind: Any) -> None:
    """Found by the fuzz test of v1 and CRD fields: a list as resourceType was looked up in the set
    of order types, which raised TypeError (unhashable) and answered 500."""
    order = {**service_request("s1", "15823"), "resourceType": kind}
    issue = assert_outcome(post(client, order_sign(order)), 400, "context.draftOrders.entry[0].resource")
    assert "is not a request resource CRD answers for" in issue["diagnostics"]


def test_one_malformed_billing_code_is_answered_alone_and_the_other_orders_still_are(client, crd) -> None:
    broken = service_request("broken", "7706X", pos="22")
    broken["code"]["coding"].append({"system": CPT, "code": "15823"})
    body = assert_ok(post(client, order_sign(broken, service_request("fine", "15823", pos="22"))), crd)
    codes = by_code(repetitions(body, "ServiceRequest/broken", crd), crd)
    assert value(codes["7706X"], "covered") == ["indeterminate"]
    assert "CPT code '7706X' on ServiceRequest/broken is not a well-formed CPT code" in \
        value(codes["7706X"], "reason")[0]["text"]
    assert value(codes["15823"], "pa-needed") == ["auth-needed"]
    fine = by_code(repetitions(body, "ServiceRequest/fine", crd), crd)["15823"]
    assert value(fine, "pa-needed") == ["auth-needed"]


def test_an_order_stating_a_fact_the_engine_refuses_is_answered_indeterminate_alone(client, crd) -> None:
    ancient = service_request("ancient", "15823", pos="22")
    ancient["occurrenceDateTime"] = "1850-01-01"  # valid FHIR, refused by the engine as implausible
    body = assert_ok(post(client, order_sign(ancient, service_request("fine", "15823", pos="22"))), crd)
    (only,) = repetitions(body, "ServiceRequest/ancient", crd)
    assert value(crd.subs(only), "covered") == ["indeterminate"]
    assert "ServiceRequest/ancient states a fact covreq cannot use" in value(crd.subs(only), "reason")[0]["text"]
    assert value(by_code(repetitions(body, "ServiceRequest/fine", crd), crd)["15823"], "pa-needed") == ["auth-needed"]


def test_a_prefetch_the_ehr_could_not_fill_counts_as_absent(client, crd) -> None:
    prefetch = {"coverage": acme_coverage(), "patient": None,
                "conditions": {"resourceType": "OperationOutcome", "issue": [
                    {"severity": "error", "code": "not-found"}]}}
    body = assert_ok(post(client, order_sign(service_request("s1", "77065"), prefetch=copy.deepcopy(prefetch))), crd)
    assert value(by_code(repetitions(body, "ServiceRequest/s1", crd), crd)["77065"], "pa-needed") == ["conditional"]


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                                        max_size=3), max_leaves=12)


@settings(max_examples=150, deadline=None)
@given(kind=st.sampled_from(["Coverage", "Bundle", "ServiceRequest", "Patient", "Nope", ""]),
       fields=st.dictionaries(st.sampled_from(["id", "status", "entry", "payor", "subject", "resourceType",
                                               "code", "extension", "contained"]), json_values, max_size=4))
def test_checking_any_json_as_r4_names_problems_and_never_raises(kind: str, fields: dict) -> None:
    found = r4.problems({"resourceType": kind, **fields}, "x")
    assert all(p.path.startswith("x") and p.message for p in found)


def test_a_coverage_found_valid_and_then_sent_changed_in_one_element_is_checked_again(client, crd) -> None:
    """Regression for remembering valid resources: the same Coverage, once valid, then with one bad element."""
    prefetch = {"coverage": acme_coverage()}
    assert_ok(post(client, order_sign(service_request("s1", "15823"), prefetch=copy.deepcopy(prefetch))), crd)
    assert_ok(post(client, order_sign(service_request("s1", "15823"), prefetch=copy.deepcopy(prefetch))), crd)
    prefetch["coverage"]["entry"][0]["resource"]["period"] = {"start": "2026-13-40"}
    issue = assert_outcome(post(client, order_sign(service_request("s1", "15823"), prefetch=prefetch)), 400)
    assert issue["expression"][0].startswith("prefetch.coverage.entry[0].resource.period.start")


def test_an_invalid_resource_sent_again_gets_the_same_400(client) -> None:
    prefetch = {"coverage": acme_coverage(status="enforced")}
    first, again = (assert_outcome(post(client, order_sign(service_request("s1", "15823"), prefetch=prefetch)), 400)
                    for _ in range(2))
    assert first == again and first["expression"] == ["prefetch.coverage.entry[0].resource.status"]


def test_a_number_that_differs_only_in_its_fraction_is_checked_anew() -> None:
    valid = {"resourceType": "Patient", "id": "p1", "multipleBirthInteger": 1}
    assert r4.problems(valid, "prefetch.patient") == [] == r4.problems(valid, "prefetch.patient")
    (problem,) = r4.problems({**valid, "multipleBirthInteger": 1.5}, "prefetch.patient")
    assert problem.path == "prefetch.patient.multipleBirthInteger"


@settings(max_examples=100, deadline=None)
@given(changes=st.lists(st.tuples(st.sampled_from(["status", "period", "payor", "subscriberId", "order",
                                                   "beneficiary", "class"]), json_values), max_size=3))
def test_remembering_valid_resources_never_changes_a_verdict(changes: list[tuple[str, Any]]) -> None:
    coverage = acme_coverage()["entry"][0]["resource"]
    assert r4.problems(coverage, "c") == []  # remembered as valid
    changed = {**coverage, **dict(changes)}
    for _ in range(2):  # checked, then perhaps remembered
        assert r4.problems(changed, "c") == r4._check(changed, "c")


def test_the_valid_resources_remembered_are_bounded() -> None:
    for number in range(r4.KNOWN_VALID + 10):
        assert r4.problems({"resourceType": "Patient", "id": f"p{number}"}, "prefetch.patient") == []
    assert len(r4._known_valid) == r4.KNOWN_VALID


valid_coverage = st.builds(lambda: copy.deepcopy(acme_coverage()["entry"][0]["resource"]))
entry_resources = st.one_of(
    valid_coverage, valid_coverage.map(lambda c: {**c, "id": "c2"}),
    st.sampled_from([{"resourceType": "Extension", "url": "http://example.org/x"},  # valid alone, but
                     {"resourceType": "Coding", "code": "x"}]).map(copy.deepcopy),  # not a resource
    st.builds(lambda kind, fields: {"resourceType": kind, "id": "r1", **fields},
              st.sampled_from(["Patient", "Coverage", "Practitioner", "Bundle", "Resource", "DomainResource", "Nope"]),
              st.dictionaries(st.sampled_from(["status", "gender", "name", "payor", "entry", "url", "type"]),
                              json_values, max_size=2)),
    st.none(), st.text(max_size=4))
bundle_entries = st.one_of(
    st.builds(lambda resource, extra: {"resource": resource, **extra}, entry_resources,
              st.dictionaries(st.sampled_from(["fullUrl", "search"]), st.sampled_from(["urn:x", {"mode": "match"}]),
                              max_size=1)),
    st.builds(lambda extra: extra, st.dictionaries(st.sampled_from(["fullUrl", "request"]), json_values, max_size=1)),
    st.none(), st.integers())


@settings(max_examples=200, deadline=None)
@given(entries=st.lists(bundle_entries, max_size=3), bundle_type=st.sampled_from(["searchset", "collection", "nope"]),
       bundle_id=st.from_regex(r"[A-Za-z0-9]{1,6}", fullmatch=True) | st.text(max_size=3))
def test_a_bundle_checked_in_parts_gets_the_verdict_and_problems_of_the_bundle_checked_whole(
        entries: list[Any], bundle_type: str, bundle_id: str) -> None:
    bundle = {"resourceType": "Bundle", "id": bundle_id, "type": bundle_type, "entry": entries}
    for _ in range(2):  # checked, then perhaps remembered (whole or in parts)
        assert r4.problems(bundle, "prefetch.x") == r4._check(bundle, "prefetch.x")


def test_the_same_resources_found_by_a_new_search_are_not_checked_again(monkeypatch) -> None:
    search = acme_coverage()
    assert r4.problems(search, "prefetch.coverage") == []
    checked: list[str] = []
    check = r4._check
    monkeypatch.setattr(r4, "_check", lambda resource, where: checked.append(resource["resourceType"])
                        or check(resource, where))
    again = {**copy.deepcopy(search), "id": "a-new-search", "meta": {"lastUpdated": "2026-01-02T03:04:05Z"}}
    assert r4.problems(again, "prefetch.coverage") == []
    assert checked == ["Bundle"]  # the new Bundle without its entries' resources; the Coverage is remembered
    again["entry"][0]["resource"]["status"] = "enforced"
    (problem,) = r4.problems(again, "prefetch.coverage")
    assert problem.path == "prefetch.coverage.entry[0].resource.status"


def test_the_card_of_an_order_with_many_r4_problems_names_the_first_ten_and_counts_the_rest(client, crd) -> None:
    order = service_request("s1", "15823")
    order.update({f"bogus{n}": n for n in range(30)})  # thirty elements R4 does not have
    body = assert_ok(post(client, order_sign(order)), crd)
    (card,) = body["cards"]
    assert card["detail"].count("- `context.draftOrders.entry[0].resource.bogus") == 10
    assert card["detail"].endswith("- and 20 more") and body["systemActions"] == []
