"""The /fhir endpoints: capabilities, resolution of the generated Questionnaires, stable
canonicals, and OperationOutcome 4xx answers to input covreq cannot use."""
from __future__ import annotations

import copy
import datetime as dt
import json
import shutil
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from dtr_helpers import (BUNDLED_RULES, answer, bundles, coverage, form_of, package_request, parses_as_r4,
                         response_of, service_request)
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

import engine
from service.dtr.catalogue import Catalogue
from service.dtr.versions import DTR_SD, INPUT_PROFILE

PACKAGE, NEXT = "/fhir/Questionnaire/$questionnaire-package", "/fhir/Questionnaire/$next-question"
BLEPH = "http://testserver/fhir/Questionnaire/medicare-opd-blepharoplasty"


def outcome(reply: Any, status: int) -> dict[str, Any]:
    """The OperationOutcome of an error reply, checked to have ``status`` and the FHIR media type."""
    assert reply.status_code == status, reply.text
    assert reply.headers["content-type"].startswith("application/fhir+json")
    body = reply.json()
    assert body["resourceType"] == "OperationOutcome"
    parses_as_r4(body)
    return body["issue"][0]  # type: ignore[no-any-return]


def test_metadata_is_a_capability_statement_of_a_dtr_payer_service(dtr_client: TestClient) -> None:
    statement = dtr_client.get("/fhir/metadata").json()
    parses_as_r4(statement)
    assert statement["fhirVersion"] == "4.0.1"
    assert "http://hl7.org/fhir/us/davinci-dtr/CapabilityStatement/dtr-payer-service|2.0.1" in statement["instantiates"]
    (rest,) = statement["rest"]
    assert "COVREQ_AUTH_ISSUERS is not set" in rest["security"]["description"]
    questionnaire, value_set, library, claim = rest["resource"][:4]  # then Subscription (docs/pas-subscriptions.md)
    assert {o["name"] for o in claim["operation"]} == {"submit", "inquire"}
    assert {o["name"] for o in questionnaire["operation"]} == {"questionnaire-package", "next-question",
                                                               "log-questionnaire-errors"}
    assert (value_set["type"], [o["name"] for o in value_set["operation"]]) == ("ValueSet", ["expand"])
    assert library["type"] == "Library" and {i["code"] for i in library["interaction"]} == {"read", "search-type"}


def test_questionnaire_resolves_by_url_by_url_and_version_and_by_id(dtr_client: TestClient) -> None:
    by_url = dtr_client.get("/fhir/Questionnaire", params={"url": BLEPH}).json()
    parses_as_r4(by_url)
    assert by_url["type"] == "searchset" and by_url["total"] == 1
    found = by_url["entry"][0]["resource"]
    assert dtr_client.get("/fhir/Questionnaire", params={"url": f"{BLEPH}|2022-01-07"}).json()["total"] == 1
    assert dtr_client.get("/fhir/Questionnaire", params={"url": BLEPH, "version": "1999"}).json()["total"] == 0
    assert dtr_client.get(f"/fhir/Questionnaire/{found['id']}").json() == found
    assert dtr_client.get("/fhir/Questionnaire/medicare-opd-blepharoplasty").json() == found


def test_questionnaire_search_without_url_lists_the_current_standard_and_adaptive_form_of_each_policy(
        dtr_client: TestClient) -> None:
    listed = dtr_client.get("/fhir/Questionnaire").json()
    urls = [e["resource"]["url"] for e in listed["entry"]]
    assert len(urls) == len(set(urls)) == 2 * engine.load(BUNDLED_RULES).policy_count()
    assert len([u for u in urls if u.endswith("-adaptive")]) == engine.load(BUNDLED_RULES).policy_count()


def test_unknown_questionnaire_is_a_404_operation_outcome(dtr_client: TestClient) -> None:
    assert outcome(dtr_client.get("/fhir/Questionnaire/no-such-policy"), 404)["code"] == "not-found"


def test_canonicals_and_forms_are_the_same_for_every_load_of_the_same_rules(tmp_path: Path) -> None:
    def everything(rules: Path) -> dict[str, str]:
        ruleset = engine.load(rules)
        forms = Catalogue(ruleset, "https://payer.example/fhir")
        return {forms.form(p).canonical: json.dumps([forms.form(p).questionnaire, forms.form(p).value_sets])
                for p in ruleset.policy_versions()}

    copied = Path(shutil.copytree(BUNDLED_RULES, tmp_path / "rules"))
    first, second = everything(BUNDLED_RULES), everything(copied)
    assert first == second
    assert "https://payer.example/fhir/Questionnaire/medicare-opd-blepharoplasty|2022-01-07" in first


def test_configured_fhir_base_names_the_canonicals(make_dtr_client: Any) -> None:
    client = make_dtr_client(fhir_base="https://payer.example/fhir/")
    reply = client.post(PACKAGE, json=package_request(service_request()))
    questionnaire = bundles(reply.json())[0]["entry"][0]["resource"]
    assert questionnaire["url"] == "https://payer.example/fhir/Questionnaire/medicare-opd-blepharoplasty-adaptive"


@pytest.mark.parametrize("body, expression", [
    ({"resourceType": "Bundle"}, "Parameters"),
    ({"resourceType": "Parameters", "parameter": {}}, "Parameters.parameter"),
    ({"resourceType": "Parameters", "parameter": [{"name": "order", "resource": service_request()}]},
     "Parameters.parameter"),
    (package_request(), "Parameters.parameter"),
    ({"resourceType": "Parameters", "parameter": [{"name": "coverage", "resource": {"resourceType": "Patient"}}]},
     "Parameters.parameter[0].resource"),
    (package_request({**service_request(), "id": None}), "Parameters.parameter[1].resource.id"),
    (package_request({"resourceType": "Observation", "id": "o"}), "Parameters.parameter[1].resource"),
    ({"resourceType": "Parameters", "parameter": [{"name": "coverage", "resource": coverage()},
                                                  {"name": "questionnaire", "valueString": "x"}]},
     "Parameters.parameter[1].valueCanonical"),
    ({"resourceType": "Parameters", "parameter": [{"name": "coverage", "resource": coverage()},
                                                  {"name": "nonsense", "valueString": "x"}]},
     "Parameters.parameter[1].name"),
    (package_request(service_request(), cov={**coverage(), "beneficiary": {"display": "no reference"}}),
     "Coverage.beneficiary.reference"),
])
def test_package_input_covreq_cannot_use_is_a_400_naming_the_parameter(
        dtr_client: TestClient, body: dict[str, Any], expression: str) -> None:
    issue = outcome(dtr_client.post(PACKAGE, json=body), 400)
    assert issue["expression"] == [expression]


def test_package_with_malformed_json_is_a_400(dtr_client: TestClient) -> None:
    issue = outcome(dtr_client.post(PACKAGE, content=b"{not json"), 400)
    assert issue["diagnostics"].startswith("malformed JSON")


def test_package_for_a_payer_this_service_does_not_serve_is_a_400_naming_the_coverage(
        dtr_client: TestClient) -> None:
    other = {**coverage(), "payor": [{"identifier": {"system": "http://example.org/payer", "value": "ACME"},
                                      "display": "Acme Health"}]}
    issue = outcome(dtr_client.post(PACKAGE, json=package_request(service_request(), cov=other)), 400)
    assert "Acme Health" in issue["diagnostics"]
    assert issue["expression"] == ["Parameters.parameter.where(name = 'coverage')"]


def test_package_for_an_ended_coverage_is_a_422(dtr_client: TestClient) -> None:
    ended = {**coverage(), "period": {"end": "2020-01-01"}}
    issue = outcome(dtr_client.post(PACKAGE, json=package_request(service_request(), cov=ended)), 422)
    assert "not active" in issue["diagnostics"]


def test_package_names_an_unknown_questionnaire_and_an_order_without_code_in_its_outcome(dtr_client: TestClient) -> None:
    no_code = {**service_request(order_id="sr-2"), "code": {"text": "eyelid surgery"}}
    reply = dtr_client.post(PACKAGE, json=package_request(no_code, questionnaires=(f"{BLEPH}-nope|1",)))
    assert reply.status_code == 200
    (result,) = reply.json()["parameter"]
    diagnostics = [i["diagnostics"] for i in result["resource"]["issue"]]
    assert any("ServiceRequest/sr-2 carries no CPT or HCPCS code" in d for d in diagnostics)
    assert any(f"{BLEPH}-nope|1" in d for d in diagnostics)


def test_package_for_an_order_that_needs_nothing_says_so(dtr_client: TestClient) -> None:
    reply = dtr_client.post(PACKAGE, json=package_request(service_request(pos="11")))
    (result,) = reply.json()["parameter"]
    assert result["name"] == "outcome"
    assert "no-auth" in result["resource"]["issue"][0]["diagnostics"]


def test_package_of_a_questionnaire_asked_for_by_canonical_holds_the_standard_form_and_in_2_2_a_draft_response(
        dtr_client: TestClient) -> None:
    body = package_request(questionnaires=(f"{BLEPH}|2022-01-07",))
    (bundle,) = bundles(dtr_client.post(PACKAGE, json=body).json())
    parses_as_r4(bundle)
    assert [e["resource"]["resourceType"] for e in bundle["entry"]][0] == "Questionnaire"
    assert "QuestionnaireResponse" not in {e["resource"]["resourceType"] for e in bundle["entry"]}  # 2.0.1: item 1..*
    body["meta"] = {"profile": [f"{INPUT_PROFILE}|2.2.0"]}
    (bundle,) = bundles(dtr_client.post(PACKAGE, json=body).json())
    assert bundle["entry"][0]["resource"]["meta"]["profile"] == [f"{DTR_SD}/dtr-std-questionnaire"]
    assert response_of(bundle)["questionnaire"] == f"{BLEPH}|2022-01-07"



def test_package_in_a_dtr_version_not_served_is_a_400_naming_those_served(dtr_client: TestClient) -> None:
    body = package_request(questionnaires=(f"{BLEPH}|2022-01-07",))
    body["meta"] = {"profile": ["http://example.org/other-profile|9.8", f"{INPUT_PROFILE}|9.9"]}
    issue = outcome(dtr_client.post(PACKAGE, json=body), 400)
    assert issue["expression"] == ["Parameters.meta.profile"]
    assert issue["diagnostics"] == "DTR version '9.9' is not served; covreq serves 2.0.1, 2.1.0, 2.2.0"

def test_package_unchanged_since_the_last_load_is_only_an_outcome(dtr_client: TestClient) -> None:
    later = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=1)).isoformat()
    body = package_request(service_request())
    body["parameter"].append({"name": "changedsince", "valueInstant": later})
    (result,) = dtr_client.post(PACKAGE, json=body).json()["parameter"]
    assert result["name"] == "outcome"


@pytest.fixture()
def start(dtr_client: TestClient) -> dict[str, Any]:
    """The adaptive response of the blepharoplasty package (no place of service)."""
    return response_of(bundles(dtr_client.post(PACKAGE, json=package_request(service_request())).json())[0])


def _nq(client: TestClient, response: Any) -> Any:
    return client.post(NEXT, json={"resourceType": "Parameters",
                                   "parameter": [{"name": "questionnaire-response", "resource": response}]})


def test_next_question_takes_the_response_itself_as_well_as_in_parameters(dtr_client: TestClient,
                                                                          start: dict[str, Any]) -> None:
    reply = dtr_client.post(NEXT, json=answer(start, "place_of_service", {"valueString": "11"}))
    assert reply.json()["status"] == "completed"


def test_next_question_refuses_an_answer_to_an_item_the_form_does_not_have(dtr_client: TestClient,
                                                                          start: dict[str, Any]) -> None:
    wrong = copy.deepcopy(start)
    wrong["item"].append({"linkId": "facts", "item": [{"linkId": "stage", "answer": [{"valueString": "trial"}]}]})
    issue = outcome(_nq(dtr_client, wrong), 400)
    assert "'stage' is not an item" in issue["diagnostics"]
    assert issue["expression"] == ["QuestionnaireResponse.item[1].item[0]"]


@pytest.mark.parametrize("answers, message", [
    ([{"valueDate": "2024-01-01"}], "must be a valueCoding with a code or a valueString"),
    ([{"valueString": "19"}, {"valueString": "22"}], "takes one answer, not 2"),
])
def test_next_question_refuses_an_answer_that_does_not_fit_its_item(dtr_client: TestClient, start: dict[str, Any],
                                                                   answers: list[Any], message: str) -> None:
    issue = outcome(_nq(dtr_client, answer(start, "place_of_service", *answers)), 400)
    assert message in issue["diagnostics"]


def test_next_question_refuses_answers_no_request_could_state(dtr_client: TestClient, start: dict[str, Any]) -> None:
    issue = outcome(_nq(dtr_client, answer(start, "place_of_service", {"valueString": "1" * 300})), 400)
    assert "place_of_service" in issue["diagnostics"]
    assert issue["expression"] == ["QuestionnaireResponse.item[1].item[0].answer"]


@pytest.mark.parametrize("change, status", [
    (lambda r: r.update(questionnaire="http://elsewhere/Questionnaire/x"), 400),
    (lambda r: r.update(contained=[]), 400),
    (lambda r: r["contained"][0].update(derivedFrom=["http://elsewhere/Questionnaire/x|1"]), 422),  # not what was signed
    (lambda r: r.update(resourceType="Observation"), 400),
])
def test_next_question_refuses_a_response_without_its_form(dtr_client: TestClient, start: dict[str, Any],
                                                           change: Any, status: int) -> None:
    wrong = copy.deepcopy(start)
    change(wrong)
    outcome(_nq(dtr_client, wrong), status)


def test_next_question_with_malformed_parameters_is_a_400(dtr_client: TestClient) -> None:
    outcome(dtr_client.post(NEXT, json={"resourceType": "Parameters", "parameter": []}), 400)
    outcome(dtr_client.post(NEXT, content=b"[1,"), 400)


def test_adaptive_form_names_the_server_that_answers_next_question(start: dict[str, Any]) -> None:
    adaptive = [e for e in form_of(start)["extension"] if e["url"].endswith("sdc-questionnaire-questionnaireAdaptive")]
    assert adaptive == [{"url": adaptive[0]["url"], "valueUrl": "http://testserver/fhir"}]


def test_dtr_operations_leave_an_audit_record_with_their_decisions(dtr_client: TestClient, tmp_path: Path) -> None:
    dtr_client.post(PACKAGE, json=package_request(service_request()))
    dtr_client.post(NEXT, json={"resourceType": "Bundle"})
    records = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert [(r["api"], r["operation"], r["status"]) for r in records] == [
        ("dtr", "questionnaire-package", 200), ("dtr", "next-question", 400)]
    assert records[0]["decisions"] == [{"code": "15823", "system": "CPT", "pa_needed": "conditional",
                                        "covered": "covered"}]


def test_under_strict_audit_a_dtr_answer_whose_record_cannot_be_written_is_withheld(make_dtr_client: Any,
                                                                                  tmp_path: Path) -> None:
    """Regression: strict audit withheld v1 and CRD answers it could not record, but DTR answered
    anyway, although its decisions are as much a payer's answer."""
    (tmp_path / "audit").mkdir()
    client = make_dtr_client(audit_path=tmp_path / "audit" / "audit.jsonl", strict_audit=True)
    assert client.post(PACKAGE, json=package_request(service_request())).status_code == 200
    shutil.rmtree(tmp_path / "audit")  # records can no longer be written
    withheld = outcome(client.post(PACKAGE, json=package_request(service_request())), 503)
    assert withheld["diagnostics"].startswith("the audit record of this call could not be written")


def test_with_trusted_issuers_the_operations_need_a_jwt_and_metadata_stays_open(make_dtr_client: Any,
                                                                                 tmp_path: Path) -> None:
    private = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "ehr.pem").write_bytes(private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    issuers = tmp_path / "issuers.yaml"
    issuers.write_text("issuers:\n  - iss: https://ehr.example.org\n    public_key: ehr.pem\n")
    client = make_dtr_client(auth_issuers=issuers, service_url="https://covreq.example.org")
    assert client.get("/fhir/metadata").status_code == 200
    refused = client.post(PACKAGE, json=package_request(service_request()))
    assert outcome(refused, 401)["diagnostics"].startswith("authentication required")
    assert refused.headers["WWW-Authenticate"].startswith("Bearer")
    assert client.get("/fhir/Questionnaire").status_code == 401
    now = int(dt.datetime.now(dt.timezone.utc).timestamp())
    signed = jwt.encode({"iss": "https://ehr.example.org", "aud": "https://covreq.example.org", "iat": now,
                         "exp": now + 60, "jti": "dtr-1"}, private, algorithm="ES256")
    accepted = client.post(PACKAGE, json=package_request(service_request()),
                           headers={"Authorization": f"Bearer {signed}"})
    assert accepted.status_code == 200


def test_package_with_an_order_that_is_not_valid_r4_is_a_400_naming_the_order(dtr_client: TestClient) -> None:
    broken = {**service_request(), "status": 7}
    issue = outcome(dtr_client.post(PACKAGE, json=package_request(broken)), 400)
    assert "R4" in issue["diagnostics"]
    assert issue["expression"] == ["Parameters.parameter.where(name = 'order')"]


def test_dtr_operations_are_timed_and_their_answers_counted(dtr_client: TestClient, start: dict[str, Any]) -> None:
    dtr_client.post(NEXT, json=answer(start, "place_of_service", {"valueString": "11"}))
    text = dtr_client.get("/metrics").text
    samples = {(s.name, frozenset(s.labels.items())): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}

    def count(name: str, **labels: str) -> float:
        return sum(v for (n, found), v in samples.items() if n == name and labels.items() <= dict(found).items())
    assert count("covreq_answers_total", api="dtr", pa_needed="conditional") == 1  # the package
    assert count("covreq_answers_total", api="dtr", pa_needed="no-auth") == 1  # the answer 11
    assert count("covreq_decision_duration_seconds_count", route=NEXT) == 1
    assert count("covreq_decision_duration_seconds_count", route=PACKAGE) == 1


def test_each_listed_host_names_its_own_canonicals(make_dtr_client: Any) -> None:
    """A host in COVREQ_PUBLIC_HOSTS names the canonicals of its requests, never another host's
    (test_dtr_hosts.py: unlisted hosts name nothing)."""
    client = make_dtr_client(public_hosts=("a.example", "b.example:8080"))
    for host in ("a.example", "b.example:8080", "a.example"):
        listed = client.get("/fhir/Questionnaire", params={"url": BLEPH.replace("testserver", host)},
                            headers={"host": host}).json()
        assert listed["total"] == 1
        assert listed["entry"][0]["resource"]["url"] == f"http://{host}/fhir/Questionnaire/medicare-opd-blepharoplasty"


def test_package_for_a_scheduled_ambulance_transport_fills_its_trip_counts_from_the_order(
        dtr_client: TestClient) -> None:
    order = {**service_request("A0428"), "occurrenceTiming": {"repeat": {
        "frequency": 3, "period": 1, "periodUnit": "wk", "boundsPeriod": {"start": "2026-03-02", "end": "2026-03-31"}}}}
    del order["occurrenceDateTime"]
    (bundle,) = bundles(dtr_client.post(PACKAGE, json=package_request(order)).json())
    parses_as_r4(bundle)
    response = response_of(bundle)
    filled = {item["linkId"]: item["answer"][0] for group in response["item"] for item in group.get("item", [])
              if item.get("answer")}
    assert filled["round_trips_in_10_days"]["valueDecimal"] == 5
    assert filled["round_trip_weeks"]["valueDecimal"] == 5
    assert filled["date_of_service"]["valueDate"] == "2026-03-02"
