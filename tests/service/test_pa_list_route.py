"""``GET /pa-list/{payer}``: the public prior-authorization list in three formats, without
credentials, under the lookup page's content security policy, cached per rule set."""
from __future__ import annotations

import csv
import io
import shutil
from pathlib import Path
from typing import Callable

from fastapi.testclient import TestClient

from admin import ADMIN
from service.api_keys import hash_key

HERE = Path(__file__).resolve().parent
FIXTURE_RULES = HERE / "fixtures" / "rules"
BUNDLED_RULES = HERE.parents[1] / "rules"


def test_each_format_has_its_type_and_the_bundled_medicare_list_names_blepharoplasty(
        make_client: Callable[..., TestClient]) -> None:
    client = make_client(BUNDLED_RULES)
    body = client.get("/pa-list/medicare", params={"date": "2026-03-01"}).json()
    assert body["date"] == "2026-03-01" and body["ruleset"] == client.get("/v1/ruleset").json()["ruleset"]
    assert any(i["code"] == "15823" and i["settings_text"] == "place of service 19, 22; type of bill 13*"
               for i in body["items"])
    assert not any(i["code"] == "67911" and i["policy"]["id"] == "medicare-opd-blepharoplasty" for i in body["items"])
    text = client.get("/pa-list/medicare", params={"date": "2026-03-01", "format": "csv"})
    assert text.headers["content-type"] == "text/csv; charset=utf-8"
    assert len(list(csv.DictReader(io.StringIO(text.text)))) == len(body["items"])
    page = client.get("/pa-list/medicare", params={"date": "2026-03-01", "format": "html",
                                                   "plan": "original-medicare-ffs"})
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert "default-src 'self'" in page.headers["content-security-policy"] and "<script" not in page.text
    assert "Original Medicare (Parts A and B, fee-for-service), 2026-03-01" in page.text


def test_the_list_needs_no_credentials_where_v1_does(make_client: Callable[..., TestClient], tmp_path: Path) -> None:
    keys = tmp_path / "keys.yaml"
    keys.write_text(f"clinic: {hash_key('a-long-enough-test-api-key-123')}\n")
    client = make_client(api_keys=keys)
    assert client.post("/v1/requirements", json={}).status_code == 401
    assert client.get("/pa-list/acme", params={"date": "2024-02-01"}).status_code == 200


def test_an_unchanged_list_answers_304_to_its_etag_and_a_reload_makes_a_new_one(
        make_client: Callable[..., TestClient], tmp_path: Path) -> None:
    rules = Path(shutil.copytree(FIXTURE_RULES, tmp_path / "rules"))
    client = make_client(rules)
    first = client.get("/pa-list/acme", params={"date": "2024-02-01", "plan": "acme-gold"})
    assert first.status_code == 200 and first.headers["cache-control"].startswith("public")
    again = client.get("/pa-list/acme", params={"date": "2024-02-01", "plan": "acme-gold"},
                       headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304 and again.content == b""
    policy = rules / "acme" / "eyelid-surgery.yaml"
    policy.write_text(policy.read_text().replace("codes: [15820-15823]", "codes: [15820-15822]"))
    assert client.post("/admin/reload", headers=ADMIN).status_code == 200
    after = client.get("/pa-list/acme", params={"date": "2024-02-01", "plan": "acme-gold"},
                       headers={"If-None-Match": first.headers["etag"]})
    assert after.status_code == 200 and after.headers["etag"] != first.headers["etag"]
    codes = {i["code"] for i in after.json()["items"]}
    assert "15822" in codes and "15823" not in codes


def test_bad_input_gets_a_precise_4xx(make_client: Callable[..., TestClient]) -> None:
    client = make_client()
    for params, path, status, words in (
            ({}, "/pa-list/acm", 404, "unknown payer 'acm'"),
            ({"plan": "platinum"}, "/pa-list/acme", 400, "unknown plan 'platinum'"),
            ({"date": "2024-13-01"}, "/pa-list/acme", 400, "is not a date"),
            ({"format": "pdf"}, "/pa-list/acme", 400, "not one of json, csv, html"),
            ({}, "/pa-list/" + "x" * 101, 422, "at most 100 characters")):
        response = client.get(path, params=params)
        assert response.status_code == status, (path, params, response.text)
        assert words in response.json()["error"]["message"]
