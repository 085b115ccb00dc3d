"""docs/dtr.md: the blepharoplasty example answers exactly as documented, a tampered response is
refused as documented, and the threat model names what the code signs and refuses."""
from __future__ import annotations

import json
import re
from typing import Any, Callable

import pytest
import jwt
from dtr_helpers import REPO, answer, asked, bundles, form_of, items, response_of, server_answers, with_answer
from fastapi.testclient import TestClient
from test_dtr_tampering import TAMPERINGS

from service.dtr.adaptive import SERVER_ONLY
from service.dtr.signing import CONTEXT_URL, DEFAULT_LIFETIME_DAYS, TOKEN_TYPE, Context, Keyring

DOC = (REPO / "docs" / "dtr.md").read_text(encoding="utf-8")
EXAMPLES = {m["name"]: json.loads(m["body"]) for m in re.finditer(
    r"<!-- example: (?P<name>[\w-]+) -->\n```json\n(?P<body>.*?)\n```", DOC, re.S)}
MASKED_SUBS = {"date", "coverage-assertion-id", CONTEXT_URL}
#: The walkthrough's excerpts: parts of what each call returns (keys and list items left out are not shown).
EXCERPTS = {m["name"]: json.loads(m["body"]) for m in re.finditer(
    r"<!-- excerpt: (?P<name>[\w-]+) -->\n\s*```json\n(?P<body>.*?)\n\s*```", DOC, re.S)}


def mask(value: Any) -> Any:
    """Blank what differs between runs: timestamps, random fullUrls, the assertion date and id, the
    signed context (its times and key); and what is too long to show, a Library's content."""
    if isinstance(value, list):
        return [mask(v) for v in value]
    if not isinstance(value, dict):
        return value
    masked = {k: "…" if k == "authored" or k == "fullUrl" and str(v).startswith("urn:uuid:") else mask(v)
              for k, v in value.items()}
    if masked.get("url") in MASKED_SUBS:
        masked.update({k: "…" for k in masked if k.startswith("value")})
    if "contentType" in masked and "data" in masked:  # a Library's CQL and ELM: see docs/dtr.md "Libraries"
        masked["data"] = "…"
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
    assert reply.status_code == 200, reply.text
    result = reply.json()
    assert result["status"] == "in-progress"
    assert len(asked(result)) == 6 and all(q.startswith("documentation.") for q in asked(result))


def shows(actual: Any, excerpt: Any) -> bool:
    """Whether ``excerpt`` is a part of ``actual``: its keys with values that are parts of theirs,
    its list items the first items of the list, in order."""
    if isinstance(excerpt, dict):
        return isinstance(actual, dict) and all(k in actual and shows(actual[k], v) for k, v in excerpt.items())
    if isinstance(excerpt, list):
        return isinstance(actual, list) and len(excerpt) <= len(actual) and all(map(shows, actual, excerpt))
    return bool(actual == excerpt)


def test_the_walkthrough_shows_what_each_of_the_three_calls_returns(client: TestClient) -> None:
    assert set(EXCERPTS) == {"dtr-walk-asked", "dtr-walk-owed", "dtr-walk-decided"}
    start = response_of(bundles(client.post("/fhir/Questionnaire/$questionnaire-package",
                                            json=EXAMPLES["dtr-package-request"]).json())[0])
    groups = {g["linkId"]: g for g in form_of(start)["item"]}
    assert start["status"] == "in-progress" and shows(groups["facts"], EXCERPTS["dtr-walk-asked"])
    assert len(groups["facts"]["item"]) == len(EXCERPTS["dtr-walk-asked"]["item"])  # nothing else is asked
    second = client.post("/fhir/Questionnaire/$next-question", json=answer(start, "place_of_service",
                                                                           {"valueString": "22"})).json()
    owed = next(g for g in form_of(second)["item"] if g["linkId"] == "documentation")
    assert shows(owed, EXCERPTS["dtr-walk-owed"]) and len(owed["item"]) == len(EXCERPTS["dtr-walk-owed"]["item"])
    attached = second
    for item in items(form_of(second), "documentation"):
        attached = answer(attached, item["linkId"], {"valueAttachment": {"title": "record.pdf"}})
    third = client.post("/fhir/Questionnaire/$next-question", json=attached).json()
    assert third["status"] == "completed" and not asked(third)
    assert any(shows(e, EXCERPTS["dtr-walk-decided"]) for e in third["extension"])
    assert any(i["linkId"] == "decision" and i["type"] == "display" for i in form_of(third)["item"])


THREATS = DOC.split("## Threat model", 1)[1].split("\n## ", 1)[0]


def test_a_changed_code_is_refused_as_documented(client: TestClient) -> None:
    start = response_of(bundles(client.post("/fhir/Questionnaire/$questionnaire-package",
                                            json=EXAMPLES["dtr-package-request"]).json())[0])
    stamp = server_answers(start)["code"][0]["extension"]
    tampered = with_answer(answer(start, "place_of_service", {"valueString": "11"}), "order", "code",
                           {"valueString": "99213", "extension": stamp})
    reply = client.post("/fhir/Questionnaire/$next-question", json=tampered)
    assert reply.status_code == 422
    assert {k: v for k, v in reply.json().items() if k != "meta"} == EXAMPLES["dtr-tampered-code"]


def test_the_threat_model_names_what_the_code_signs_and_refuses() -> None:
    assert f"`{CONTEXT_URL}`" in THREATS and f"`typ` `{TOKEN_TYPE}`" in THREATS
    assert f"({DEFAULT_LIFETIME_DAYS} by default)" in THREATS
    only_server = re.search(r"a user answer to a fact only the server fills \(([^)]*)\)", THREATS)
    assert only_server is not None and set(re.findall(r"`([\w.]+)`", only_server[1])) == SERVER_ONLY
    claims = jwt.decode(Keyring.ephemeral().seal(Context((), {}, (), (), None))["valueString"],
                        options={"verify_signature": False})
    assert set(claims) - {"iss"} == {"form", "known", "coverage", "context", "subject", "uses", "dtr", "iat", "exp"}
    assert all(f"`{claim}`" in THREATS.split("**What is refused.**")[0] for claim in set(claims) - {"iss"})


def test_every_refusal_the_threat_model_quotes_is_one_the_tampering_tests_expect() -> None:
    listed = THREATS.split("**What is refused.**")[1].split("422 rather than 400")[0]
    quoted = [m.removesuffix(" ...") for m in re.findall(r"`((?:the |')[^`]+)`", listed.replace("\n  ", " "))]
    expected = [message for _, _, message, _ in TAMPERINGS]
    assert len(quoted) == 9
    for message in quoted:
        assert any(message in e or e in message for e in expected), message
