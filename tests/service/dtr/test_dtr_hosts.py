"""URLs covreq hands out never come from a request header the operator did not list (issue 22,
item 4), and the forms kept per base URL are bounded (issue 24, item 2)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from dtr_helpers import BUNDLED_RULES, FIXTURES, bundles, package_request, service_request
from fastapi.testclient import TestClient
from serving import served

import engine
from service.dtr import catalogue as catalogues
from service.dtr.catalogue import MAX_BASES, catalogue
from service.server import warn_without_public_url
from service.settings import Settings

BLEPH = "/fhir/Questionnaire/medicare-opd-blepharoplasty"
V1 = {"payer": "medicare", "plan": "original-medicare-ffs", "date_of_service": "2024-03-14",
      "services": [{"code": "15823"}]}
FORGED = {"Host": "evil.example", "X-Forwarded-Host": "evil2.example", "X-Forwarded-Proto": "https",
          "Forwarded": "host=evil3.example;proto=https"}


def handed_out(client: TestClient, headers: dict[str, str]) -> str:
    """Everything that names a URL of covreq, from every endpoint that hands one out, as one text."""
    replies = [client.get("/fhir/metadata", headers=headers), client.get("/fhir/Questionnaire", headers=headers),
               client.get(f"{BLEPH}", headers=headers),
               client.post("/fhir/Questionnaire/$questionnaire-package", headers=headers,
                           json=package_request(service_request())),
               client.post("/v1/requirements", headers=headers, json=V1)]
    assert all(r.status_code == 200 for r in replies), [r.text for r in replies]
    return "\n".join(r.text for r in replies)


def test_a_forged_host_header_names_nothing_covreq_hands_out(dtr_client: TestClient) -> None:
    """Regression: ``Host: evil.example`` put ``http://evil.example/fhir/Questionnaire/...`` into the
    canonicals, the adaptive-form URL and the v1 links an EHR stores."""
    text = handed_out(dtr_client, FORGED)
    assert "evil" not in text
    assert "http://testserver/fhir/Questionnaire/medicare-opd-blepharoplasty" in text  # the address reached


def test_listed_hosts_name_their_own_urls_and_others_get_the_service_url(make_dtr_client: Any) -> None:
    client = make_dtr_client(public_hosts=("a.example", "b.example:8080"), service_url="https://covreq.example.org")
    for host in ("a.example", "B.example:8080"):
        listed = client.get("/fhir/Questionnaire", headers={"host": host}).json()
        assert {e["resource"]["url"].split("/fhir/")[0] for e in listed["entry"]} == {f"http://{host.lower()}"}
    text = handed_out(client, {**FORGED, "Host": "a.example.evil.example"})
    assert "evil" not in text and "https://covreq.example.org/fhir/Questionnaire/" in text


def test_the_configured_fhir_base_wins_over_a_listed_host(make_dtr_client: Any) -> None:
    client = make_dtr_client(public_hosts=("a.example",), fhir_base="https://payer.example/fhir")
    reply = client.post("/fhir/Questionnaire/$questionnaire-package", headers={"host": "a.example"},
                        json=package_request(service_request()))
    assert bundles(reply.json())[0]["entry"][0]["resource"]["url"].startswith("https://payer.example/fhir/")


def test_many_host_headers_keep_one_catalogue(dtr_client: TestClient) -> None:
    """Regression (issue 24, item 2): each new Host cost a catalogue of every form (~0.53 MB)."""
    for n in range(40):
        assert dtr_client.get("/fhir/Questionnaire", headers={"host": f"h{n}.example"}).status_code == 200
    ruleset = dtr_client.app.state.holder.current  # type: ignore[attr-defined]
    assert len(catalogues._catalogues[ruleset]) == 1


def test_catalogues_per_rule_set_are_bounded_whatever_the_bases() -> None:
    ruleset = engine.load(BUNDLED_RULES)
    made = [catalogue(ruleset, f"https://h{n}.example/fhir") for n in range(MAX_BASES * 3)]
    assert len(catalogues._catalogues[ruleset]) == MAX_BASES
    assert catalogue(ruleset, made[-1].base) is made[-1]  # the most recent are kept


def test_readme_quick_start_names_forms_under_its_own_address(tmp_path: Path) -> None:
    """``covreq serve --rules rules/`` on loopback: canonicals under http://127.0.0.1:<port>/fhir,
    whatever Host or X-Forwarded-* header a request sends."""
    with served(tmp_path, "--rules", str(BUNDLED_RULES), env={"COVREQ_PAYERS": str(FIXTURES / "payers.yaml")}) as svc:
        for headers in ({}, FORGED):
            reply = httpx.post(f"{svc.base}/fhir/Questionnaire/$questionnaire-package", headers=headers,
                               json=package_request(service_request()))
            assert reply.status_code == 200, reply.text
            assert "evil" not in reply.text
            form = bundles(reply.json())[0]["entry"][0]["resource"]
            assert form["url"] == f"http://127.0.0.1:{svc.port}{BLEPH}-adaptive"


@pytest.mark.parametrize("host, settings, warned", [
    ("127.0.0.1", {}, False), ("::1", {}, False), ("localhost", {}, False), ("0.0.0.0", {}, True),
    ("0.0.0.0", {"fhir_base": "https://covreq.example.org/fhir"}, False),
    ("0.0.0.0", {"service_url": "https://covreq.example.org"}, False),
    ("0.0.0.0", {"public_hosts": ("covreq.example.org",)}, False)])
def test_serving_beyond_loopback_without_a_public_url_is_warned_of(host: str, settings: dict[str, Any],
                                                                   warned: bool) -> None:
    assert warn_without_public_url(Settings(**settings), host) is warned


def test_public_hosts_are_bare_host_names() -> None:
    assert Settings.from_env({"COVREQ_PUBLIC_HOSTS": "A.example, b.example:8080"}).public_hosts == (
        "a.example", "b.example:8080")
    for wrong in ("https://a.example", "a.example/fhir", "user@a.example", ":8080"):
        with pytest.raises(ValueError, match="COVREQ_PUBLIC_HOSTS"):
            Settings.from_env({"COVREQ_PUBLIC_HOSTS": wrong})
