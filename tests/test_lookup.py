"""The lookup page's routes without a browser: files, content types, payer choices, local-only resources."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

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


def test_payer_choices_come_from_the_loaded_rule_set(client: TestClient) -> None:
    body = client.get("/lookup/payers").json()
    assert [(p["id"], p["plans"]) for p in body["payers"]] == [
        ("alabama-medicaid", ["medicare-medicaid-dual"]), ("cigna", ["commercial"]),
        ("florida-blue", ["commercial-aso", "commercial-hmo", "commercial-ppo"]), ("medicare", ["original-medicare-ffs"]),
        ("unitedhealthcare", ["commercial", "community", "medicare-advantage"])]
    assert all(p["title"] and p["title"] != p["id"] for p in body["payers"])
    assert body["ruleset"] == client.get("/v1/ruleset").json()["ruleset"]


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
