"""docs/dtr.md: the blepharoplasty example answers exactly as documented."""
from __future__ import annotations

import json
import re
from typing import Any, Callable

import pytest
from dtr_helpers import REPO, answer, asked, bundles, response_of
from fastapi.testclient import TestClient

from service.dtr.signing import CONTEXT_URL

DOC = (REPO / "docs" / "dtr.md").read_text(encoding="utf-8")
EXAMPLES = {m["name"]: json.loads(m["body"]) for m in re.finditer(
    r"<!-- example: (?P<name>[\w-]+) -->\n```json\n(?P<body>.*?)\n```", DOC, re.S)}
MASKED_SUBS = {"date", "coverage-assertion-id", CONTEXT_URL}


def mask(value: Any) -> Any:
    """Blank what differs between runs: timestamps, random fullUrls, the assertion date and id, the
    signed context (its times and key)."""
    if isinstance(value, list):
        return [mask(v) for v in value]
    if not isinstance(value, dict):
        return value
    masked = {k: "…" if k == "authored" or k == "fullUrl" and str(v).startswith("urn:uuid:") else mask(v)
              for k, v in value.items()}
    if masked.get("url") in MASKED_SUBS:
        masked.update({k: "…" for k in masked if k.startswith("value")})
    return masked


@pytest.fixture()
def client(make_dtr_client: Callable[..., TestClient]) -> TestClient:
    return make_dtr_client(fhir_base="https://payer.example/fhir")


def test_the_package_example_answers_as_documented(client: TestClient) -> None:
    reply = client.post("/fhir/Questionnaire/$questionnaire-package", json=EXAMPLES["dtr-package-request"])
    assert reply.status_code == 200
    assert mask(reply.json()) == EXAMPLES["dtr-package-response"]


def test_answering_11_as_documented_completes_as_documented(client: TestClient) -> None:
    start = response_of(bundles(client.post("/fhir/Questionnaire/$questionnaire-package",
                                            json=EXAMPLES["dtr-package-request"]).json())[0])
    (given,) = EXAMPLES["dtr-answer-11"]["item"]
    reply = client.post("/fhir/Questionnaire/$next-question", json={"resourceType": "Parameters", "parameter": [
        {"name": "questionnaire-response", "resource": answer(start, given["linkId"], *given["answer"])}]})
    assert mask(reply.json()) == EXAMPLES["dtr-next-question-11"]


def test_answering_22_leaves_only_the_six_documentation_items_as_documented(client: TestClient) -> None:
    start = response_of(bundles(client.post("/fhir/Questionnaire/$questionnaire-package",
                                            json=EXAMPLES["dtr-package-request"]).json())[0])
    reply = client.post("/fhir/Questionnaire/$next-question", json=answer(start, "place_of_service",
                                                                          {"valueString": "22"}))
    result = reply.json()["parameter"][0]["resource"]
    assert result["status"] == "in-progress"
    assert len(asked(result)) == 6 and all(q.startswith("documentation.") for q in asked(result))
