"""Calls without (full) prefetch: covreq reads what it misses from the EHR's FHIR server, here a
stub EHR on loopback over real HTTP, with the hook's bearer token, and only from that server."""
from __future__ import annotations

import asyncio
import copy

import pytest

from crd_calls import (acme_coverage, assert_ok, assert_outcome, by_code, order_sign, post,
                       repaired_inferno_order_sign, repetitions, service_request, value)
from service.crd.gather import EhrPolicy
from service.ehr_client import EhrClient, EhrError, EhrLimits

ACME_PAYER = {"resourceType": "Organization", "id": "acme-payer", "name": "Acme Health Plan",
              "identifier": [{"system": "http://example.org/payer-ids", "value": "ACME-01"}]}


@pytest.fixture()
def queried(make_client, ehr):
    """A client allowed to query the stub EHR."""
    return make_client(fhir_servers=(ehr.url,))


def granted(request: dict, ehr, token: str = "hook-token") -> dict:
    """``request`` pointing at the stub EHR with a bearer token."""
    request["fhirServer"] = ehr.url
    request["fhirAuthorization"] = {"access_token": token, "token_type": "Bearer", "expires_in": 300,
                                    "scope": "user/Patient.read user/Coverage.read", "subject": "covreq"}
    return request


def coverage_of(patient: str) -> dict:
    """Acme's Coverage of ``patient``, as the EHR holds it."""
    bundle = acme_coverage()
    bundle["entry"][0]["resource"]["beneficiary"] = {"reference": f"Patient/{patient}"}
    return bundle


def test_the_ig_appointment_book_example_is_answered_after_querying_the_ehr(queried, ehr, anchor, crd) -> None:
    request = anchor("CRDServiceRequest4.json")
    request["fhirServer"] = ehr.url
    ehr.hold(coverage_of("123"), {"resourceType": "Patient", "id": "123", "birthDate": "1950-04-02"})
    body = assert_ok(post(queried, request), crd)
    (only,) = repetitions(body, "Appointment/example", crd)
    assert value(crd.subs(only), "coverage") == [{"reference": "Coverage/COV1"}]
    assert ehr.tokens() == {"Bearer some-opaque-fhir-access-token"}
    assert "Coverage" in ehr.paths() and "Patient/123" in ehr.paths()
    search = next(s for s in ehr.seen if s.path.endswith("/Coverage"))
    assert search.query["patient"] == ["123"] and search.query["status"] == ["active"]


def test_the_inferno_order_sign_fixture_is_answered_after_querying_the_ehr(queried, ehr, anchor, crd) -> None:
    request = repaired_inferno_order_sign(anchor("order_sign_hook_request.json"))  # not R4 as published
    request["fhirServer"] = ehr.url
    ehr.hold(coverage_of("example"), {"resourceType": "Patient", "id": "example"})
    body = assert_ok(post(queried, request), crd)
    assert {a["resource"]["id"] for a in body["systemActions"]} == {"pureeddiet-simple", "smart-MedicationRequest-103"}
    assert ehr.tokens() == {"Bearer SAMPLE_TOKEN"}


def test_an_appointments_based_on_order_is_read_from_the_ehr_and_answered(queried, ehr, anchor, crd) -> None:
    request = anchor("CRDServiceRequest4.json")
    request["fhirServer"] = ehr.url
    appointment = request["context"]["appointments"]["entry"][0]["resource"]
    appointment["basedOn"] = [{"reference": "ServiceRequest/sr-eyelid"}]
    appointment["start"] = "2026-05-02T09:00:00Z"
    eyelid = service_request("sr-eyelid", "15823", pos="22")
    eyelid["subject"] = {"reference": "Patient/123"}
    ehr.hold(coverage_of("123"), {"resourceType": "Patient", "id": "123"}, eyelid)
    body = assert_ok(post(queried, request), crd)
    (action,) = body["systemActions"]
    assert action["resource"]["id"] == "sr-eyelid"  # CRD: the update goes to the order, not the Appointment
    assert value(by_code(crd.coverage_information(action), crd)["15823"], "pa-needed") == ["auth-needed"]
    assert "2026-05-02 (from the order)" in body["cards"][0]["detail"]


def test_an_order_gets_the_same_answer_by_prefetch_and_by_query(client, queried, ehr, ig_order_sign, crd) -> None:
    with_prefetch = ig_order_sign()
    with_prefetch["fhirServer"] = ehr.url  # the same EHR, so the same coverage-assertion-ids
    by_prefetch = assert_ok(post(client, with_prefetch), crd)
    without = granted(copy.deepcopy(with_prefetch), ehr)
    ehr.hold(*(v for v in without.pop("prefetch").values() if v))
    by_query = assert_ok(post(queried, without), crd)
    assert by_query["systemActions"] == by_prefetch["systemActions"]
    assert {"Coverage", "Patient/123", "PractitionerRole/ABC", "Organization/acme-payer"} <= set(ehr.paths())


def test_dispatched_orders_their_medication_and_requester_npi_are_read(queried, ehr, anchor, identify, crd) -> None:
    request = granted(identify(anchor("CRDServiceRequest2.json")), ehr)
    del request["extension"]["davinci-crd.configuration"]["coverage-info"]
    for number in ("1111", "2222"):
        ehr.hold({"resourceType": "MedicationRequest", "id": number, "status": "draft", "intent": "order",
                  "subject": {"reference": "Patient/pat1234"}, "requester": {"reference": "PractitionerRole/r1"},
                  "medicationReference": {"reference": f"Medication/m{number}"}})
        ehr.hold({"resourceType": "Medication", "id": f"m{number}", "code": {"coding": [
            {"system": "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets", "code": "E0431"}]}})
    ehr.hold({"resourceType": "PractitionerRole", "id": "r1", "practitioner": {"reference": "Practitioner/p1"}},
             {"resourceType": "Practitioner", "id": "p1",
              "identifier": [{"system": "http://hl7.org/fhir/sid/us-npi", "value": "1234567893"}]})
    body = assert_ok(post(queried, request), crd)
    assert [a["resource"]["id"] for a in body["systemActions"]] == ["1111", "2222"]
    assert "E0431" in by_code(repetitions(body, "MedicationRequest/1111", crd), crd)
    assert {"MedicationRequest/1111", "Medication/m1111", "PractitionerRole/r1", "Practitioner/p1"} <= set(ehr.paths())


def test_a_fhir_server_the_operator_has_not_listed_is_never_queried(client, ehr, anchor) -> None:
    request = anchor("CRDServiceRequest4.json")
    request["fhirServer"] = ehr.url
    issue = assert_outcome(post(client, request), 412, "Coverage")
    assert f"covreq is not configured to query {ehr.url} (COVREQ_FHIR_SERVERS)" in issue["diagnostics"]
    assert ehr.seen == []


def test_a_failed_coverage_search_is_a_412_saying_why(queried, ehr, anchor) -> None:
    ehr.broken["Coverage"] = 503
    request = granted(anchor("CRDServiceRequest4.json"), ehr)
    issue = assert_outcome(post(queried, request), 412, "Coverage")
    assert "GET Coverage: HTTP 503" in issue["diagnostics"]


def test_an_empty_coverage_search_is_a_400(queried, ehr, anchor) -> None:
    request = granted(anchor("CRDServiceRequest4.json"), ehr)
    issue = assert_outcome(post(queried, request), 400, "Coverage")
    assert "no Coverage" in issue["diagnostics"]


@pytest.mark.parametrize("trouble", ["broken", "redirect", "slow", "huge"])
def test_data_the_ehr_fails_to_give_makes_an_open_answer_indeterminate_technical(make_client, ehr, crd,
                                                                                  trouble: str) -> None:
    client = make_client(fhir_servers=(ehr.url,), ehr_timeout_seconds=0.5, ehr_max_bytes=20_000)
    {"broken": ehr.broken, "redirect": ehr.broken, "slow": ehr.slow, "huge": ehr.huge}[trouble]["Patient/p1"] = \
        {"broken": 500, "redirect": 302, "slow": 2.0, "huge": 50_000}[trouble]  # redirects are not followed
    ehr.hold(coverage_of("p1"))
    request = granted({"hook": "order-sign", "hookInstance": "h1", "context": {
        "userId": "Practitioner/u1", "patientId": "p1", "draftOrders": {
            "resourceType": "Bundle", "type": "collection", "entry": [
                {"resource": service_request("open", "15823")},            # turns on place of service
                {"resource": service_request("settled", "99213")}]}}}, ehr)  # no policy lists it
    body = assert_ok(post(client, request), crd)
    opened = by_code(repetitions(body, "ServiceRequest/open", crd), crd)["15823"]
    assert value(opened, "pa-needed") == ["indeterminate"]  # the element the failure left open (resp-43)
    technical = value(opened, "reason")[0]
    assert technical["coding"][0]["code"] == "technical" and "GET Patient/p1" in technical["text"]
    assert "info-needed" not in opened
    settled = by_code(repetitions(body, "ServiceRequest/settled", crd), crd)["99213"]
    assert value(settled, "pa-needed") == ["no-auth"]


def test_independent_queries_run_concurrently(queried, ehr, crd) -> None:
    ehr.hold(coverage_of("p1"), {"resourceType": "Patient", "id": "p1"})
    ehr.slow.update({"Patient/p1": 0.4, "Coverage": 0.4, "Condition": 0.4})
    request = granted({"hook": "order-sign", "hookInstance": "h2", "context": {
        "userId": "Practitioner/u1", "patientId": "p1", "draftOrders": {
            "resourceType": "Bundle", "type": "collection", "entry": [{"resource": service_request("s1", "15823")}]}}},
        ehr)
    assert_ok(post(queried, request), crd)
    first = {s.path.rsplit("/fhir/", 1)[1]: s for s in ehr.seen}
    started = [first[p].started for p in ("Patient/p1", "Coverage", "Condition")]
    finished = [first[p].finished for p in ("Patient/p1", "Coverage", "Condition")]
    assert max(started) < min(finished), "each query began before any had been answered"


def test_the_operator_lists_the_servers_covreq_may_query() -> None:
    policy = EhrPolicy(servers=("https://ehr.example.org/fhir/",))
    assert policy.allows("https://ehr.example.org/fhir") and policy.allows("https://ehr.example.org/fhir/")
    assert not policy.allows("https://ehr.example.org/fhir/../admin")
    assert not policy.allows("https://ehr.example.org.evil.test/fhir")
    anywhere = EhrPolicy(servers=("*",))
    assert anywhere.allows("https://any.example/r4") and not anywhere.allows("http://169.254.169.254/latest")
    assert not EhrPolicy().allows("https://ehr.example.org/fhir")


def test_a_token_without_a_fhir_server_is_a_400(client, ehr) -> None:
    request = granted(order_sign(service_request("s1", "15823")), ehr)
    del request["fhirServer"]
    assert_outcome(post(client, request), 400, "fhirServer")


def test_a_null_prefetch_key_is_the_ehrs_empty_answer_and_is_not_searched_again(queried, ehr, crd) -> None:
    """Regression (issue 22, item 7): null (CDS Hooks 2.0: looked, found nothing) was read as an
    absent key, so covreq searched the EHR for what it had just said it does not hold."""
    request = granted(order_sign(service_request("s1", "15823", pos="22"),
                                 prefetch={"coverage": acme_coverage(), "conditions": None}), ehr)
    assert_ok(post(queried, request), crd)
    assert "Condition" not in ehr.paths()
    request["prefetch"] = {"coverage": None}
    ehr.hold(coverage_of("p1"))  # what a search would find: the EHR's null stands
    assert_outcome(post(queried, request), 400, "prefetch.coverage")
    assert "Coverage" not in ehr.paths()


def _dispatch_based_on(reference: str, ehr) -> dict:
    """An order-sign call whose order is an Appointment based on ``reference``, read from the EHR."""
    appointment = {"resourceType": "Appointment", "id": "ap1", "status": "proposed",
                   "basedOn": [{"reference": reference}],
                   "participant": [{"actor": {"reference": "Patient/p1"}, "status": "needs-action"}]}
    ehr.hold(coverage_of("p1"), {"resourceType": "Patient", "id": "p1"})
    return granted({"hook": "appointment-book", "hookInstance": "h13", "context": {
        "userId": "Practitioner/u1", "patientId": "p1", "appointments": {
            "resourceType": "Bundle", "type": "collection", "entry": [{"resource": appointment}]}}}, ehr)


def test_regression_a_non_ascii_access_token_is_a_400_not_a_500(queried, ehr) -> None:
    request = granted(order_sign(service_request("s1", "15823")), ehr, token="t\u00f6ken")
    issue = assert_outcome(post(queried, request), 400, "fhirAuthorization.access_token")
    assert "ASCII" in issue["diagnostics"]
    assert ehr.seen == []


@pytest.mark.parametrize("reference", ["ServiceRequest/sr1\n", "ServiceRequest/..", "ServiceRequest/.",
                                       "ServiceRequest/sr1%0a"])
def test_regression_a_reference_that_is_no_fhir_id_is_never_fetched(queried, ehr, reference: str) -> None:
    response = post(queried, _dispatch_based_on(reference, ehr))
    assert response.status_code < 500, response.text
    assert not [s for s in ehr.seen if s.path.rstrip("/") in ("/fhir", "") or "ServiceRequest" in s.path]


@pytest.mark.parametrize("reference, key", [
    ("ServiceRequest/sr-1.2", "ServiceRequest/sr-1.2"), ("https://other.example/fhir/Patient/p1", "Patient/p1"),
    ("Patient/...", "Patient/..."), ("ServiceRequest/..", None), ("ServiceRequest/.", None),
    ("ServiceRequest/sr1\n", None), ("ServiceRequest/sr1%2F..", None), ("Patient/" + "x" * 65, None)])
def test_only_a_whole_fhir_type_and_id_is_ever_read(reference: str, key: str | None) -> None:
    async def check() -> None:
        async with EhrClient("https://ehr.example.org/fhir", "token", EhrLimits()) as client:
            assert client.key_of(reference) == key
            if key is None:  # and read() refuses it before any request
                with pytest.raises(EhrError, match="is not a FHIR Type/id"):
                    await client.read(reference)
    asyncio.run(check())
