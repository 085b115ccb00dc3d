"""Regression (issue 22, item 1): ``$next-question`` trusted what the client holds. The order facts
the server filled, the form whose rules run, the Coverage, the orders and the patient came back from
the client, and any of them could be changed for a completed ``no-auth`` attributed to the real
order. Each tampering below is answered on the place of service 11, which honestly completes
``no-auth``: now it is a 422 OperationOutcome naming what does not match, never a completed answer.
Honest round trips still complete, across replicas and restarts that share the key file, and
through a key rotation."""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Callable

import jwt
import pytest
from dtr_helpers import (MANUAL, altered_answer, answer, bundles, coverage_information, key_file, package_request, parses_as_r4,
                         response_of, server_answers, service_request, with_answer, with_reference, without_extension)
from fastapi.testclient import TestClient

from service.crd.coverage_information import COVERAGE_INFORMATION
from service.dtr.adaptive import _PARTS, INTENDED_USE, QR_CONTEXT
from service.dtr.signing import CONTEXT_URL
from service.dtr.versions import INPUT_PROFILE

COVERAGE_AT, ORDERS_AT = (where for part, _, where in _PARTS if part in ("coverage", "orders"))

PACKAGE, NEXT = "/fhir/Questionnaire/$questionnaire-package", "/fhir/Questionnaire/$next-question"
CIGNA = "http://testserver/fhir/Questionnaire/cigna-advanced-imaging|2021-02-22"
POS_11 = {"valueString": "11"}
SECRET_1, SECRET_2 = "k1-secret-of-at-least-32-characters", "k2-secret-of-at-least-32-characters"
Change = Callable[[dict[str, Any]], dict[str, Any]]


def package(client: TestClient, order: dict[str, Any] | None = None) -> dict[str, Any]:
    """The adaptive response of the package for ``order`` (by default Medicare 15823, no place of service)."""
    reply = client.post(PACKAGE, json=package_request(order or service_request()))
    assert reply.status_code == 200, reply.text
    return response_of(bundles(reply.json())[0])


@pytest.fixture()
def start(dtr_client: TestClient) -> dict[str, Any]:
    return package(dtr_client)


def next_question(client: TestClient, response: dict[str, Any]) -> Any:
    return client.post(NEXT, json={"resourceType": "Parameters",
                                   "parameter": [{"name": "questionnaire-response", "resource": response}]})


def returned(reply: Any) -> dict[str, Any]:
    assert reply.status_code == 200, reply.text
    return reply.json()  # type: ignore[no-any-return]


def refused(reply: Any, message: str, expression: str | None = None) -> None:
    """A 422 OperationOutcome whose diagnostics say ``message`` (at ``expression``)."""
    assert reply.status_code == 422, reply.text
    body = reply.json()
    parses_as_r4(body)
    (issue,) = body["issue"]
    assert body["resourceType"] == "OperationOutcome" and message in issue["diagnostics"], issue
    if expression is not None:
        assert issue["expression"] == [expression]


def order_item(link_id: str) -> str:
    return f"QuestionnaireResponse.repeat(item).where(linkId = '{link_id}')"


def changed(link_id: str, *answers: dict[str, Any]) -> Change:
    """Give the server-filled ``link_id`` other answers (its auto-server stamp kept)."""
    def change(response: dict[str, Any]) -> dict[str, Any]:
        stamp = server_answers(response)[link_id][0]["extension"]
        return with_answer(response, "order", link_id, *({**a, "extension": stamp} for a in answers))
    return change


def moved_to_facts(response: dict[str, Any], link_id: str, *answers: dict[str, Any]) -> dict[str, Any]:
    """The contained form asks ``link_id`` as a question, and the user answers it instead of the server."""
    result = with_answer(response, "order", link_id)
    for group in result["contained"][0]["item"]:
        group["item"] = [i for i in group.get("item", []) if i["linkId"] != link_id]
    return with_answer(result, "facts", link_id, *answers)


def swapped_form(response: dict[str, Any]) -> dict[str, Any]:
    """A Cigna form in place of the Medicare one: the contained form derives from it."""
    result = copy.deepcopy(response)
    result["contained"][0] = {**result["contained"][0], "derivedFrom": [CIGNA], "name": "CignaAdvancedImaging"}
    return result


TAMPERINGS: list[tuple[str, Change, str, str]] = [
    ("code", changed("code", {"valueString": "99213"}), "the order item 'code' differs from what the server signed",
     order_item("code")),
    ("plan", changed("plan", {"valueString": "medicare-advantage"}), "the order item 'plan' differs",
     order_item("plan")),
    ("date", changed("date_of_service", {"valueDate": "2019-06-01"}), "the order item 'date_of_service' differs",
     order_item("date_of_service")),
    ("code-removed", lambda r: with_answer(r, "order", "code"), "the order item 'code' the server signed is missing",
     order_item("code")),
    ("plan-removed", lambda r: with_answer(r, "order", "plan"), "the order item 'plan' the server signed is missing",
     order_item("plan")),
    ("order-item-added", lambda r: with_answer(r, "order", "other_codes", {"valueString": "15822"}),
     "the order item 'other_codes' was not filled by the server", order_item("other_codes")),
    ("plan-restated", lambda r: with_answer(r, "facts", "plan", {"valueString": "commercial"}),
     "the order item 'plan' differs", order_item("plan")),
    ("code-restated", lambda r: with_answer(r, "facts", "code", {"valueString": "99213"}),
     "the order item 'code' differs", order_item("code")),
    ("plan-moved-to-facts", lambda r: moved_to_facts(r, "plan", {"valueString": "commercial"}),
     "the order item 'plan' the server signed is missing", order_item("plan")),
    ("payer-answered", lambda r: with_answer(r, "facts", "payer", {"valueString": "cigna"}),
     "'payer' is filled by the server from the order; a user cannot answer it", order_item("payer")),
    ("other-codes-answered", lambda r: with_answer(r, "facts", "other_codes", {"valueString": "15822"}),
     "'other_codes' is filled by the server", order_item("other_codes")),
    ("form-swap", swapped_form, "the contained Questionnaire's derivedFrom differs from what the server signed",
     "QuestionnaireResponse.contained.derivedFrom"),
    ("coverage-swap", lambda r: with_reference(r, QR_CONTEXT, "Coverage/someone-elses"),  # DTR 2.0.1: a qr-context
     "the Coverage reference (qr-coverage; qr-context before DTR 2.2) differs", COVERAGE_AT),
    ("order-swap", lambda r: with_reference(r, QR_CONTEXT, "ServiceRequest/someone-elses"),
     "the order reference (qr-context) differs", ORDERS_AT),
    ("patient-swap", lambda r: {**r, "subject": {"reference": "Patient/someone-else"}}, "the subject differs",
     "QuestionnaireResponse.subject"),
    ("intended-use-changed", lambda r: {**r, "extension": [
        {**e, "valueCodeableConcept": {"coding": [{**e["valueCodeableConcept"]["coding"][0], "code": "withorder"}]}}
        if e["url"] == INTENDED_USE else e for e in r["extension"]]}, "the intendedUse differs",
     f"QuestionnaireResponse.extension.where(url = '{INTENDED_USE}')"),
    ("signature-removed", lambda r: without_extension(r, CONTEXT_URL), "carries no context signed by this server",
     "QuestionnaireResponse.extension"),
]


@pytest.mark.parametrize("change, message, expression", [t[1:] for t in TAMPERINGS], ids=[t[0] for t in TAMPERINGS])
def test_a_response_that_changed_what_the_server_signed_is_refused(dtr_client: TestClient, start: dict[str, Any],
                                                                   change: Change, message: str,
                                                                   expression: str) -> None:
    honest = answer(start, "place_of_service", POS_11)
    assert returned(next_question(dtr_client, honest))["status"] == "completed"
    refused(next_question(dtr_client, change(honest)), message, expression)


def test_every_server_answer_altered_is_refused(dtr_client: TestClient, start: dict[str, Any]) -> None:
    honest = answer(start, "place_of_service", POS_11)
    for link_id, answers in server_answers(honest).items():
        tampered = with_answer(honest, "order", link_id, *map(altered_answer, answers))
        refused(next_question(dtr_client, tampered), f"the order item '{link_id}' differs", order_item(link_id))


def test_a_response_signed_by_another_server_is_refused(dtr_client: TestClient,
                                                        make_dtr_client: Callable[..., TestClient],
                                                        start: dict[str, Any], tmp_path: Path) -> None:
    elsewhere = package(make_dtr_client(audit_path=tmp_path / "elsewhere.jsonl"))  # another random key
    refused(next_question(dtr_client, answer(elsewhere, "place_of_service", POS_11)),
            "which this server does not hold", f"QuestionnaireResponse.extension.where(url = '{CONTEXT_URL}')")
    foreign = next(e for e in elsewhere["extension"] if e["url"] == CONTEXT_URL)
    transplanted = {**start, "extension": [*without_extension(start, CONTEXT_URL)["extension"], foreign]}
    refused(next_question(dtr_client, answer(transplanted, "place_of_service", POS_11)), "does not hold")


def test_a_signature_made_with_another_secret_under_the_same_key_id_is_refused(
        make_dtr_client: Callable[..., TestClient], tmp_path: Path) -> None:
    ours = make_dtr_client(dtr_keys=key_file(tmp_path / "ours.yaml", "k1", k1=SECRET_1))
    theirs = make_dtr_client(dtr_keys=key_file(tmp_path / "theirs.yaml", "k1", k1=SECRET_2))
    refused(next_question(ours, answer(package(theirs), "place_of_service", POS_11)), "does not verify")


def test_replicas_and_restarts_sharing_the_key_file_carry_the_round_trip(make_dtr_client: Callable[..., TestClient],
                                                                         tmp_path: Path) -> None:
    keys = key_file(tmp_path / "keys.yaml", "k1", k1=SECRET_1)
    replica_a, replica_b = make_dtr_client(dtr_keys=keys), make_dtr_client(dtr_keys=keys)
    start = package(replica_a)
    owed = returned(next_question(replica_b, answer(start, "place_of_service", {"valueString": "22"})))
    assert owed["status"] == "in-progress"
    for group in owed["contained"][0]["item"]:
        if group["linkId"] == "documentation":
            for item in group["item"]:
                owed = answer(owed, item["linkId"], {"valueAttachment": {"title": "record.pdf"}})
    restarted = make_dtr_client(dtr_keys=keys)
    done = returned(next_question(restarted, owed))
    assert done["status"] == "completed"
    assert coverage_information(done)["pa-needed"] == ["auth-needed"]


def test_without_a_key_file_a_restarted_server_refuses_the_forms_of_the_last_one(
        make_dtr_client: Callable[..., TestClient]) -> None:
    before, after = make_dtr_client(), make_dtr_client()
    refused(next_question(after, answer(package(before), "place_of_service", POS_11)), "does not hold")


def test_after_a_key_rotation_old_forms_still_verify_and_new_ones_are_signed_with_the_active_key(
        make_dtr_client: Callable[..., TestClient], tmp_path: Path) -> None:
    old = make_dtr_client(dtr_keys=key_file(tmp_path / "old.yaml", "k1", k1=SECRET_1))
    rotated = make_dtr_client(dtr_keys=key_file(tmp_path / "rotated.yaml", "k2", k1=SECRET_1, k2=SECRET_2))
    retired = make_dtr_client(dtr_keys=key_file(tmp_path / "retired.yaml", "k2", k2=SECRET_2))

    def kid(response: dict[str, Any]) -> str:
        token = next(e for e in response["extension"] if e["url"] == CONTEXT_URL)["valueString"]
        return jwt.get_unverified_header(token)["kid"]  # type: ignore[no-any-return]

    start = package(old)
    assert kid(start) == "k1" and kid(package(rotated)) == "k2"
    done = returned(next_question(rotated, answer(start, "place_of_service", POS_11)))
    assert done["status"] == "completed" and kid(done) == "k2"
    refused(next_question(retired, answer(start, "place_of_service", POS_11)), "'k1', which this server does not hold")


def test_a_draft_response_to_a_form_asked_by_canonical_is_never_answered(dtr_client: TestClient,
                                                                         start: dict[str, Any]) -> None:
    """The blank response of a questionnaire asked for by canonical is not signed: sent as is, or made
    adaptive with the form and order facts of the client's choosing, it is refused."""
    canonical = start["contained"][0]["derivedFrom"][0]
    asked = {**package_request(questionnaires=(canonical,)), "meta": {"profile": [f"{INPUT_PROFILE}|2.2.0"]}}
    reply = dtr_client.post(PACKAGE, json=asked)  # DTR 2.2: a package holds a response even without answers
    blank = response_of(bundles(reply.json())[0])
    assert CONTEXT_URL not in {e["url"] for e in blank["extension"]}
    assert next_question(dtr_client, blank).status_code == 400
    adaptive = {**blank, "contained": start["contained"], "questionnaire": "#form", "item": start["item"]}
    refused(next_question(dtr_client, answer(adaptive, "place_of_service", POS_11)),
            "carries no context signed by this server")


def test_a_coverage_information_the_client_adds_is_never_returned(dtr_client: TestClient,
                                                                  start: dict[str, Any]) -> None:
    """An in-progress response used to carry any extension through, a forged coverage-information too."""
    forged = {"url": COVERAGE_INFORMATION, "extension": [{"url": "covered", "valueCode": "covered"},
                                                         {"url": "pa-needed", "valueCode": "no-auth"}]}
    reply = returned(next_question(dtr_client, {**start, "extension": [*start["extension"], forged]}))
    assert reply["status"] == "in-progress"
    assert COVERAGE_INFORMATION not in {e["url"] for e in reply["extension"]}


def test_a_refused_tampering_leaves_an_audit_record_naming_the_part(dtr_client: TestClient, start: dict[str, Any],
                                                                    tmp_path: Path) -> None:
    refused(next_question(dtr_client, changed("code", {"valueString": "99213"})(start)), "differs")
    record = json.loads((tmp_path / "audit.jsonl").read_text().splitlines()[-1])
    assert (record["operation"], record["status"], record["error_location"]) == ("next-question", 422,
                                                                                  order_item("code"))
    assert "decisions" not in record


def test_a_users_answer_the_client_stamped_auto_server_is_refused(dtr_client: TestClient) -> None:
    """covreq stamps auto-server (DTR 2.2) on what it filled; a user's answer stamped so by the client
    used to come back as if covreq had filled it, then without any origin (DTR: 1..1). It is a 400 now."""
    asked = {**package_request(service_request()), "meta": {"profile": [f"{INPUT_PROFILE}|2.2.0"]}}
    start = response_of(bundles(dtr_client.post(PACKAGE, json=asked).json())[0])
    server = server_answers(start)["code"][0]["extension"][0]
    assert server["extension"] == [{"url": "source", "valueCode": "auto-server"}]
    for stamps in ([server, MANUAL], [server]):
        reply = next_question(dtr_client, answer(start, "place_of_service", {**POS_11, "extension": stamps}))
        assert reply.status_code == 400, reply.text
        assert reply.json()["issue"][0]["expression"][0].startswith("QuestionnaireResponse.item[1].item[0].answer[0]")
    reply = returned(next_question(dtr_client, answer(start, "place_of_service", {**POS_11, "extension": [MANUAL]})))
    (given,) = [i for g in reply["item"] if g["linkId"] == "facts" for i in g["item"]]
    assert given["answer"] == [{**POS_11, "extension": [MANUAL]}]
    parses_as_r4(reply)
