"""CRD 2.0.1 clients: requestedVersion 2.0 is answered in 2.0.1's codes; 2.2 stays the default."""
from __future__ import annotations

import pytest

from crd_calls import assert_outcome, order_sign, post, service_request, value

THO_DETAIL = "http://terminology.hl7.org/CodeSystem/crd-coverage-detail"


def answer(client, crd, *orders: dict, version: str | None = None) -> list[dict]:
    """The sub-extensions of every coverage-information repetition of the answer."""
    request = order_sign(*orders)
    if version:
        request["extension"] = {"davinci-crd.requestedVersion": version}
    response = post(client, request)
    assert response.status_code == 200, response.text
    return [crd.subs(e) for a in response.json()["systemActions"]
            for e in a["resource"]["extension"]]


def test_discovery_declares_both_versions(client) -> None:
    for service in client.get("/cds-services").json()["services"]:
        assert service["extension"]["davinci-crd.version"] == ["2.0", "2.2"]


def test_requested_version_2_0_is_answered_in_2_0_1_codes(client, crd) -> None:
    eyelid = service_request("s1", "15823", pos="22")  # clinical and patient documentation
    nutrition = {"resourceType": "NutritionOrder", "id": "n1", "status": "draft", "intent": "order",
                 "patient": {"reference": "Patient/p1"}, "dateTime": "2026-01-02"}  # no billing code
    (surgery, diet) = answer(client, crd, eyelid, nutrition, version="2.0")
    assert value(surgery, "doc-needed") == ["both"]  # 0..1 in 2.0.1; no "patient" code
    link = surgery["detail"][0]["extension"]
    assert [sub["url"] for sub in link] == ["code", "value"]  # 2.0.1 detail: no category, no url type
    assert link[0]["valueCodeableConcept"]["coding"][0]["system"] == THO_DETAIL
    assert link[1] == {"url": "value", "valueString": "https://example.org/acme/policies/eyelid-surgery"}
    assert "info-needed" not in diet  # detail-code was a reason in 2.0.1, not an info-needed code
    assert [c["code"] for r in value(diet, "reason") for c in r.get("coding", [])] == ["detail-code"]
    assert value(diet, "covered") == ["conditional"]


def test_without_requested_version_the_answer_is_2_2(client, crd) -> None:
    (surgery,) = answer(client, crd, service_request("s1", "15823", pos="22"))
    assert value(surgery, "doc-needed") == ["clinical", "patient"]
    assert [sub["url"] for sub in surgery["detail"][0]["extension"]] == ["category", "code", "value"]


@pytest.mark.parametrize("version", ["2.1", "2.0.1", "3"])
def test_other_requested_versions_are_refused(client, version: str) -> None:
    request = order_sign(service_request("s1", "15823"))
    request["extension"] = {"davinci-crd.requestedVersion": version}
    assert_outcome(post(client, request), 400, "extension.davinci-crd.requestedVersion")
