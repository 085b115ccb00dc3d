"""docs/pas.md, the reviewer's decision and the metrics: the documented denial is answered by
`$inquire` exactly as shown, the documented appeal approves it, the documented 409 is the
service's, and the documented `covreq report pa-metrics` output is the command's on that period."""
from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any, Callable

import pytest
from fastapi.testclient import TestClient
from pas_profiles import check_response_bundle, review_actions
from test_pas_docs import DOC, EXAMPLES, mask
from test_pas_metrics import _period
from test_pas_review import auth, keys_file  # noqa: F401 - the reviewers' key file fixture

from covreq.cli import main

SECTION = DOC.split("### The reviewer's decision", 1)[1].split("\n### ", 1)[0]
REVIEW = {m["name"]: json.loads(m["body"]) for m in re.finditer(
    r"<!-- example: (?P<name>[\w-]+) -->\n```json\n(?P<body>.*?)\n```", SECTION, re.S)}


def _inquired(client: TestClient) -> dict[str, Any]:
    reply = client.post("/fhir/Claim/$inquire", json=EXAMPLES["pas-inquire-request"])
    assert reply.status_code == 200, reply.text
    return check_response_bundle(reply.json(), "2.0.1", inquiry=True)


def test_the_documented_denial_and_appeal_answer_as_documented(
        make_pas_client: Callable[..., TestClient], keys_file: Path) -> None:  # noqa: F811
    client = make_pas_client(reviewer_keys=keys_file)
    submitted = client.post("/fhir/Claim/$submit", json=EXAMPLES["pas-submit-request"]).json()
    request_id = submitted["entry"][0]["resource"]["id"]
    path = f"/review/api/requests/{request_id}/items/1"
    assert client.post(f"{path}/decision", json=REVIEW["review-deny"], headers=auth()).status_code == 200
    response = _inquired(client)
    assert mask(response["item"][0]) == REVIEW["review-denied-item"]
    assert response["processNote"] == REVIEW["review-denied-notes"]
    late = client.post(f"{path}/decision", json={"action": "certify", "revision": 0}, headers=auth("bob"))
    documented = re.search(r"\(`(item 1 was decided meanwhile by alice[^`]*)`\)", " ".join(SECTION.split()))
    assert late.status_code == 409 and documented and late.json()["error"]["message"] == documented[1]
    appealed = client.post(f"{path}/appeal", json=REVIEW["review-appeal"], headers=auth())
    assert appealed.status_code == 200 and review_actions(_inquired(client)) == ["A1"]


def test_the_documented_metrics_are_the_commands_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'covreq.db'}"
    _period(url)
    command = next(line for line in DOC.splitlines() if line.startswith("covreq report pa-metrics --database sqlite"))
    arguments = shlex.split(command)[1:]
    arguments[arguments.index("--database") + 1] = url
    assert main(arguments) == 0
    documented = re.search(r"<!-- output: pa-metrics -->\n```text\n(.*?)```", DOC, re.S)
    assert documented and capsys.readouterr().out == documented[1]
