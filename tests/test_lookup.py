"""The lookup page's routes without a browser: files, content types, payer choices, local-only resources."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

import engine
from service import create_app
from service.lookup import STATIC
from service.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> TestClient:
    audit = tmp_path_factory.mktemp("audit") / "audit.jsonl"
    return TestClient(create_app(str(ROOT / "rules"), Settings(audit_path=audit)))


def test_page_and_assets_are_served_with_a_same_origin_policy(client: TestClient) -> None:
    page = client.get("/lookup")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for name, kind in (("lookup.js", "text/javascript"), ("lookup.css", "text/css")):
        response = client.get(f"/lookup/{name}")
        assert response.status_code == 200 and response.headers["content-type"].startswith(kind)
        assert f'/lookup/{name}"' in page.text


@pytest.mark.parametrize("name", ["lookup.html", "..%2Fapp.py", "payers.json", "x"])
def test_nothing_else_is_served_from_the_folder(client: TestClient, name: str) -> None:
    response = client.get(f"/lookup/{name}")
    assert response.status_code == 404
    assert response.json()["error"]["status"] == 404


def test_payer_and_plan_choices_come_from_the_loaded_rule_set_with_their_titles(client: TestClient) -> None:
    """Regression (issue 15, item 13): plans showed raw ids such as original-medicare-ffs."""
    body = client.get("/lookup/payers").json()
    rules = engine.load(ROOT / "rules")
    assert [p["id"] for p in body["payers"]] == sorted(rules.payers(), key=lambda p: rules.payer_title(p).casefold())
    for payer in body["payers"]:
        assert payer["title"] == rules.payer_title(payer["id"]) != payer["id"]
        named = {plan for policy in rules.policies() if policy["payer"] == payer["id"] for plan in policy["plans"] or ()}
        assert {p["id"] for p in payer["plans"]} == named | set(rules.plan_titles(payer["id"]))
        assert all(p["title"] == rules.plan_title(payer["id"], p["id"]) != p["id"] for p in payer["plans"])
    medicare = next(p for p in body["payers"] if p["id"] == "medicare")
    assert {"id": "original-medicare-ffs", "title": "Original Medicare (Parts A and B, fee-for-service)"} in \
        medicare["plans"]
    assert body["ruleset"] == client.get("/v1/ruleset").json()["ruleset"]


def test_a_new_payer_appears_with_its_title_and_plan_titles(tmp_path: Path) -> None:
    (tmp_path / "acme").mkdir()
    (tmp_path / "acme" / "_payer.yaml").write_text(
        "payer: acme\ntitle: Acme Health Plan of the Northern Territories\nplans: {gold: Acme Gold PPO, silver: silver}\n")
    (tmp_path / "acme" / "mri.yaml").write_text(
        "id: acme-mri\ntitle: MRI\npayer: acme\nplans: [gold, silver]\neffective: 2024-01-01\n"
        "source: {url: 'https://policies.acme.test/mri'}\ncodes: ['70551']\n")
    client = TestClient(create_app(str(tmp_path), Settings(audit_path=tmp_path / "audit.jsonl")))
    assert client.get("/lookup/payers").json()["payers"] == [{
        "id": "acme", "title": "Acme Health Plan of the Northern Territories",
        "plans": [{"id": "gold", "title": "Acme Gold PPO"}, {"id": "silver", "title": "silver"}]}]


def test_the_whole_cms_place_of_service_code_set_is_served_with_its_source(client: TestClient) -> None:
    """Regression (issue 15, item 13): place of service was a short fixed list (49 and others missing)."""
    response = client.get("/lookup/place-of-service.json")
    assert response.status_code == 200 and response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["source"] == "https://www.cms.gov/Medicare/Coding/place-of-service-codes/Place_of_Service_Code_Set"
    codes = {entry["code"]: entry["name"] for entry in body["codes"]}
    assert len(codes) == len(body["codes"]) == 52
    assert all(re.fullmatch(r"\d{2}", code) and name for code, name in codes.items())
    assert (codes["11"], codes["22"], codes["49"], codes["66"]) == (
        "Office", "On Campus-Outpatient Hospital", "Independent Clinic",
        "Programs of All-Inclusive Care for the Elderly (PACE) Center")
    assert not set(codes) & {"28", "30", "40", "59", "98"}  # unassigned in the code set


def test_favicon_is_served(client: TestClient) -> None:
    """Regression (issue 15, item 13): the page's favicon was a 404."""
    icon = client.get("/favicon.ico")
    assert icon.status_code == 200 and icon.headers["content-type"].startswith("image/svg+xml")
    assert icon.url.path == "/lookup/favicon.svg" and b"<svg" in icon.content
    assert '<link rel="icon" href="/lookup/favicon.svg"' in client.get("/lookup").text


def test_static_files_load_nothing_from_another_origin() -> None:
    for path in STATIC.iterdir():
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", text), path
        assert not re.search(r"@import|url\(\s*['\"]?(https?:)?//|fetch\(\s*['\"]https?:", text), path
        assert "innerHTML" not in text, path  # answers are placed as text, never parsed as HTML


def _luminance(hex_color: str) -> float:
    channels = [int(hex_color[i:i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def test_text_colours_have_at_least_aa_contrast() -> None:
    colours = dict(re.findall(r"--([\w-]+):\s*(#[0-9a-f]{6})", (STATIC / "lookup.css").read_text(encoding="utf-8")))
    white = "#ffffff"
    pairs = [(colours["ink"], colours["ground"]), (colours["muted"], white), (colours["muted"], colours["ground"]),
             (colours["focus"], white), *((white, colours[badge]) for badge in ("auth", "free", "maybe", "held"))]
    for fore, back in pairs:
        light, dark = sorted((_luminance(fore), _luminance(back)), reverse=True)
        assert (light + 0.05) / (dark + 0.05) >= 4.5, (fore, back)
