"""CRD versions: 2.0.1 by default (an operator setting), 2.1 and 2.2 on request, each answer in
exactly the shapes of its version's ext-coverage-information profile."""
from __future__ import annotations

import pytest

from crd_calls import assert_outcome, order_sign, post, service_request, value
from crd_profiles import check_coverage_information
from service.settings import Settings

THO_DETAIL = "http://terminology.hl7.org/CodeSystem/crd-coverage-detail"
CRD_TEMP = "http://hl7.org/fhir/us/davinci-crd/CodeSystem/temp"
NUTRITION = {"resourceType": "NutritionOrder", "id": "n1", "status": "draft", "intent": "order",
             "patient": {"reference": "Patient/p1"}, "dateTime": "2026-01-02"}  # no billing code


def answer(client, crd, *orders: dict, version: str | None = None, checked: str | None = None) -> list[dict]:
    """The sub-extensions of every coverage-information repetition of the answer, each checked
    against the profile of ``checked`` (default: ``version``)."""
    request = order_sign(*orders)
    if version:
        request["extension"] = {"davinci-crd.requestedVersion": version}
    response = post(client, request)
    assert response.status_code == 200, response.text
    extensions = [e for a in response.json()["systemActions"] for e in a["resource"]["extension"]]
    for extension in extensions:
        check_coverage_information(extension, checked or version)
    return [crd.subs(e) for e in extensions]


def test_discovery_declares_every_version_served(client) -> None:
    for service in client.get("/cds-services").json()["services"]:
        assert service["extension"]["davinci-crd.version"] == ["2.0", "2.1", "2.2"]


def test_without_requested_version_the_answer_is_2_0_1(make_client, crd) -> None:
    client = make_client(crd_version=Settings().crd_version)  # the out-of-the-box setting
    eyelid = service_request("s1", "15823", pos="22")  # clinical and patient documentation
    (surgery, diet) = answer(client, crd, eyelid, NUTRITION, checked="2.0")
    assert value(surgery, "doc-needed") == ["both"]  # 0..1 in 2.0.1; no "patient" code
    link = surgery["detail"][0]["extension"]
    assert [sub["url"] for sub in link] == ["code", "value"]  # 2.0.1 detail: no category, no url type
    assert link[0]["valueCodeableConcept"]["coding"][0]["system"] == THO_DETAIL
    assert link[1] == {"url": "value", "valueString": "https://example.org/acme/policies/eyelid-surgery"}
    assert value(diet, "info-needed") == ["OTH"]  # detail-code was a reason in 2.0.1, not an info-needed code
    assert [c["code"] for r in value(diet, "reason") for c in r.get("coding", [])] == ["detail-code"]
    assert value(diet, "covered") == ["conditional"]


@pytest.mark.parametrize("version", ["2.0", "2.1", "2.2"])
def test_each_version_is_answered_in_its_own_shapes(client, crd, version: str) -> None:
    unknown = service_request("u1", "99999", pos="22")  # a code no rule lists: indeterminate in 2.2
    for subs in answer(client, crd, service_request("s1", "15823", pos="22"), NUTRITION, unknown,
                       version=version):
        if version != "2.2":
            assert "indeterminate" not in value(subs, "covered") + value(subs, "pa-needed")
            assert "detail-code" not in value(subs, "info-needed")


def test_requested_version_2_1_has_url_details_without_category_and_several_doc_needed(client, crd) -> None:
    (surgery, diet) = answer(client, crd, service_request("s1", "15823", pos="22"), NUTRITION, version="2.1")
    assert value(surgery, "doc-needed") == ["clinical", "patient"]
    link = surgery["detail"][0]["extension"]
    assert link[0]["valueCodeableConcept"]["coding"][0]["system"] == CRD_TEMP
    assert link[1] == {"url": "value", "valueUrl": "https://example.org/acme/policies/eyelid-surgery"}
    assert value(diet, "info-needed") == ["OTH"] and value(diet, "covered") == ["conditional"]


def test_requested_version_2_2_has_categories_and_detail_code(client, crd) -> None:
    (surgery, diet) = answer(client, crd, service_request("s1", "15823", pos="22"), NUTRITION, version="2.2")
    assert value(surgery, "doc-needed") == ["clinical", "patient"]
    assert [sub["url"] for sub in surgery["detail"][0]["extension"]] == ["category", "code", "value"]
    assert value(diet, "info-needed") == ["detail-code"]


def test_the_operator_chooses_the_default_version(make_client, crd) -> None:
    client = make_client(crd_version="2.2")
    (surgery,) = answer(client, crd, service_request("s1", "15823", pos="22"), checked="2.2")
    assert [sub["url"] for sub in surgery["detail"][0]["extension"]] == ["category", "code", "value"]


def test_the_default_version_setting_is_2_0_1_and_a_version_not_served_stops_the_start(make_client) -> None:
    assert Settings().crd_version == "2.0.1" and Settings.from_env({"COVREQ_CRD_VERSION": "2.1"}).crd_version == "2.1"
    with pytest.raises(ValueError, match="COVREQ_CRD_VERSION"):
        make_client(crd_version="3.0")


@pytest.mark.parametrize("version", ["2.0.1", "3", "1.0"])
def test_other_requested_versions_are_refused(client, version: str) -> None:
    request = order_sign(service_request("s1", "15823"))
    request["extension"] = {"davinci-crd.requestedVersion": version}
    assert_outcome(post(client, request), 400, "extension.davinci-crd.requestedVersion")
