"""The issue's "done when": a Medicare Part B order of 15823 with no place of service, through
$questionnaire-package and $next-question, and the forms' canonicals from v1 and CRD."""
from __future__ import annotations

from typing import Any, Callable

import pytest
from dtr_helpers import (POS, answer, asked, assert_constraints, bundles, coverage, coverage_information, form_of, items,
                         package_request, parses_as_r4, response_of, service_request)
from fastapi.testclient import TestClient

BLEPH_DOCS = ["subjective-complaints", "excess-lid-skin", "visual-field-notes", "functional-impairment",
              "preop-photos", "visual-field-studies"]
NextQuestion = Callable[[dict[str, Any]], dict[str, Any]]


@pytest.fixture()
def bleph_package(dtr_client: TestClient) -> dict[str, Any]:
    """The package for Medicare Part B 15823 on 2024-03-14 with no place of service."""
    reply = dtr_client.post("/fhir/Questionnaire/$questionnaire-package", json=package_request(service_request()))
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"].startswith("application/fhir+json")
    return reply.json()  # type: ignore[no-any-return]


def test_package_holds_a_valid_r4_form_asking_the_blepharoplasty_documentation_and_the_place_of_service(
        bleph_package: dict[str, Any]) -> None:
    (bundle,) = bundles(bleph_package)
    parses_as_r4(bleph_package)
    assert_constraints(bundle)
    questionnaire = bundle["entry"][0]["resource"]
    assert questionnaire["url"].endswith("/fhir/Questionnaire/medicare-opd-blepharoplasty-adaptive")
    assert questionnaire["version"] == "2022-01-07"
    assert "item" not in questionnaire  # dtr-questionnaire-adapt-search: $next-question asks the questions
    response = response_of(bundle)
    assert response["status"] == "in-progress"
    assert form_of(response)["derivedFrom"] == [f"{questionnaire['url']}|2022-01-07"]
    assert asked(response) == ["place_of_service", *[f"documentation.{d}" for d in BLEPH_DOCS]]
    place = next(i for i in items(form_of(response)) if i["linkId"] == "place_of_service")
    value_set = next(e["resource"] for e in bundle["entry"] if e["resource"].get("url") == place["answerValueSet"].split("|")[0])
    assert [c["code"] for c in value_set["expansion"]["contains"]] == ["19", "22"]


def test_package_prepopulates_what_the_order_tells_as_read_only_server_answers(bleph_package: dict[str, Any]) -> None:
    response = response_of(bundles(bleph_package)[0])
    order = {i["linkId"]: i for i in items(form_of(response), "order")}
    assert all(item["readOnly"] for item in order.values())
    given = {i["linkId"]: i["answer"] for g in response["item"] for i in g["item"]}
    assert given["code"][0]["valueString"] == "15823"
    assert given["date_of_service"][0]["valueDate"] == "2024-03-14"
    assert given["plan"][0]["valueString"] == "original-medicare-ffs"
    origins = {a["extension"][0]["extension"][0]["valueCode"] for answers in given.values() for a in answers}
    assert origins == {"auto"}  # DTR 2.0.1, the default; 2.2 says auto-server (test_dtr_conformance.py)


def test_answering_place_of_service_22_moves_the_form_on_to_the_documentation_owed(
        bleph_package: dict[str, Any], next_question: NextQuestion) -> None:
    start = response_of(bundles(bleph_package)[0])
    reply = next_question(answer(start, "place_of_service", {"valueCoding": {"system": POS, "code": "22"}}))
    assert reply["status"] == "in-progress"
    assert_constraints(reply)
    parses_as_r4(reply)
    assert [i["linkId"] for i in items(form_of(reply), "documentation")] == [f"documentation.{d}" for d in BLEPH_DOCS]
    assert all(i["required"] for i in items(form_of(reply), "documentation"))
    assert not any(e["url"].endswith("ext-coverage-information") for e in reply.get("extension", []))


def test_answering_place_of_service_11_completes_the_form_with_no_prior_authorization(
        bleph_package: dict[str, Any], next_question: NextQuestion) -> None:
    start = response_of(bundles(bleph_package)[0])
    reply = next_question(answer(start, "place_of_service", {"valueString": "11"}))
    assert reply["status"] == "completed"
    assert_constraints(reply)
    parses_as_r4(reply)
    assert items(form_of(reply), "documentation") == []
    info = coverage_information(reply)
    assert info["pa-needed"] == ["no-auth"] and info["covered"] == ["covered"]
    assert "doc-needed" not in info
    assert info["coverage"] == [{"reference": "Coverage/cov-1"}]
    (decision,) = [i for i in form_of(reply)["item"] if i["linkId"] == "decision"]
    assert decision["type"] == "display" and decision["text"].startswith("Prior authorization: no-auth.")


def test_attaching_the_documentation_owed_completes_the_form_with_prior_authorization_needed(
        bleph_package: dict[str, Any], next_question: NextQuestion) -> None:
    reply = next_question(answer(response_of(bundles(bleph_package)[0]), "place_of_service", {"valueString": "22"}))
    for doc in BLEPH_DOCS[:-1]:
        reply = answer(reply, f"documentation.{doc}", {"valueAttachment": {"contentType": "application/pdf",
                                                                           "title": f"{doc}.pdf"}})
    assert next_question(reply)["status"] == "in-progress"  # one still owed
    done = next_question(answer(reply, f"documentation.{BLEPH_DOCS[-1]}", {"valueAttachment": {"title": "vf.pdf"}}))
    assert done["status"] == "completed"
    info = coverage_information(done)
    assert info["pa-needed"] == ["auth-needed"] and info["doc-purpose"] == ["withpa"]


def test_v1_decision_names_the_generated_form_and_its_canonical_resolves(dtr_client: TestClient) -> None:
    reply = dtr_client.post("/v1/requirements", json={"payer": "medicare", "plan": "original-medicare-ffs",
                                                      "date_of_service": "2024-03-14", "services": [{"code": "15823"}]})
    (canonical,) = reply.json()["decisions"][0]["questionnaire"]
    assert canonical == "http://testserver/fhir/Questionnaire/medicare-opd-blepharoplasty|2022-01-07"
    url, version = canonical.split("|")
    found = dtr_client.get("/fhir/Questionnaire", params={"url": url, "version": version}).json()
    assert found["total"] == 1 and found["entry"][0]["resource"]["version"] == version


def test_v1_decision_with_nothing_to_ask_names_no_form(dtr_client: TestClient) -> None:
    reply = dtr_client.post("/v1/requirements", json={"payer": "medicare", "plan": "original-medicare-ffs",
                                                      "date_of_service": "2024-03-14", "place_of_service": "11",
                                                      "services": [{"code": "15823"}]})
    assert "questionnaire" not in reply.json()["decisions"][0]


def test_crd_answer_for_the_same_order_points_at_the_form_and_its_canonical_resolves(dtr_client: TestClient) -> None:
    call = {"hook": "order-sign", "hookInstance": "dtr-scenario-1",
            "context": {"userId": "Practitioner/pr-1", "patientId": "pat-1",
                        "draftOrders": {"resourceType": "Bundle", "type": "collection",
                                        "entry": [{"resource": service_request()}]}},
            "prefetch": {"coverage": {"resourceType": "Bundle", "type": "searchset",
                                      "entry": [{"resource": coverage()}]}}}
    reply = dtr_client.post("/cds-services/order-sign-crd", json=call)
    assert reply.status_code == 200, reply.text
    (action,) = reply.json()["systemActions"]
    (info,) = [e for e in action["resource"]["extension"] if e["url"].endswith("ext-coverage-information")]
    subs = {s["url"]: s for s in info["extension"]}
    assert "doc-needed" in subs
    canonical = subs["questionnaire"]["valueCanonical"]
    assert canonical == "http://testserver/fhir/Questionnaire/medicare-opd-blepharoplasty|2022-01-07"
    found = dtr_client.get("/fhir/Questionnaire", params={"url": canonical}).json()
    assert [e["resource"]["version"] for e in found["entry"]] == ["2022-01-07"]
    package = dtr_client.post("/fhir/Questionnaire/$questionnaire-package", json=package_request(service_request()))
    adaptive = bundles(package.json())[0]["entry"][0]["resource"]
    assert adaptive["url"] == found["entry"][0]["resource"]["url"] + "-adaptive"
    resolved = dtr_client.get("/fhir/Questionnaire", params={"url": f"{adaptive['url']}|{adaptive['version']}"}).json()
    assert [e["resource"] for e in resolved["entry"]] == [adaptive]


def test_documentation_owed_only_under_an_open_condition_is_optional_and_says_when(dtr_client: TestClient,
                                                                                  next_question: NextQuestion) -> None:
    reply = dtr_client.post("/fhir/Questionnaire/$questionnaire-package",
                            json=package_request(service_request(code="63650", pos="22")))
    (bundle,) = bundles(reply.json())
    response = response_of(bundle)
    documents = {i["linkId"]: i for i in items(form_of(response), "documentation")}
    trial = documents["documentation.trial-results"]
    assert trial["required"] is False and trial["text"].endswith("(needed when the stage is permanent)")  # not rule text
    assert all(i["required"] for k, i in documents.items() if k != "documentation.trial-results")
    assert asked(response)[0] == "stage"  # what decides whether the trial results are owed
    for link_id in documents:
        if link_id != "documentation.trial-results":
            response = answer(response, link_id, {"valueAttachment": {"title": "record.pdf"}}
                              if documents[link_id]["type"] == "attachment" else {"valueBoolean": True})
    assert next_question(response)["status"] == "in-progress"  # the stage is still to be told
    done = next_question(answer(response, "stage", {"valueString": "trial"}))
    assert done["status"] == "completed" and "documentation.trial-results" not in asked(done)
    assert coverage_information(done)["pa-needed"] == ["auth-needed"]
    (said,) = [i["text"] for i in form_of(done)["item"] if i["linkId"] == "decision"]
    assert "==" not in said and "stage" not in said  # worded for people; the stage answered, nothing pending
    permanent = next_question(answer(response, "stage", {"valueString": "permanent"}))
    assert permanent["status"] == "in-progress" and asked(permanent) == ["documentation.trial-results"]
