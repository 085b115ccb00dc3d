"""The reviewers' page: served with the strict Content-Security-Policy (no inline script), and used in
a real headless browser (chromium) to sign in with a key, open the queue's request and decide its item."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator

import httpx
import pytest
from fastapi.testclient import TestClient
from pas_helpers import BUNDLED_RULES, adapted
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.select import Select
from selenium.webdriver.support.ui import WebDriverWait
from serving import in_thread
from test_lookup_browser import CHROMEDRIVER, CHROMIUM, browser  # noqa: F401 - the headless chromium fixture

from service import Settings, create_app
from service.api_keys import hash_key
from service.lookup import CONTENT_SECURITY_POLICY

KEY = "carol-reviewer-key-003"
PAYERS = BUNDLED_RULES.parent / "service" / "payers.yaml"


def test_the_page_and_its_assets_are_served_with_the_strict_csp_and_no_inline_script(pas_client: TestClient) -> None:
    page = pas_client.get("/review")
    assert page.status_code == 200 and page.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert "script-src" not in CONTENT_SECURITY_POLICY and "default-src 'self'" in CONTENT_SECURITY_POLICY
    assert re.findall(r"<script[^>]*>([^<]*)</script>", page.text) == [""]  # one script, loaded, none inline
    assert not re.search(r"<[^>]+\son\w+=", page.text)  # no inline event handler
    for name, kind in (("review.js", "text/javascript"), ("review.css", "text/css")):
        asset = pas_client.get(f"/review/{name}")
        assert asset.status_code == 200 and asset.headers["content-type"].startswith(kind)
        assert asset.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert pas_client.get("/review/other.js").status_code == 404
    assert "innerHTML" not in pas_client.get("/review/review.js").text  # data placed as text only


@pytest.fixture()
def base_url(tmp_path: Path) -> Iterator[str]:
    """The service with one reviewer key, on a free local port, in a thread."""
    keys = tmp_path / "reviewers.yaml"
    keys.write_text(f"carol: {hash_key(KEY)}\n", encoding="utf-8")
    settings = Settings(payers=PAYERS, audit_path=tmp_path / "audit.jsonl", data_dir=tmp_path / "data",
                        reviewer_keys=keys)
    with in_thread(create_app(str(BUNDLED_RULES), settings)) as url:
        yield url


@pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER), reason="chromium and chromedriver are not installed")
def test_a_reviewer_signs_in_opens_the_pended_request_and_certifies_it(
        browser: WebDriver, base_url: str) -> None:  # noqa: F811
    submitted = httpx.post(f"{base_url}/fhir/Claim/$submit", json=adapted(day="2099-01-10"), timeout=30)
    assert submitted.status_code == 200, submitted.text
    browser.get(f"{base_url}/review")
    browser.find_element(By.ID, "key").send_keys(KEY)
    browser.find_element(By.CSS_SELECTOR, "#signin button").click()
    row = WebDriverWait(browser, 10).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#queue tbody tr"))[0]
    assert "15823" in row.text and "expedited" in row.text
    row.click()
    WebDriverWait(browser, 10).until(lambda d: d.find_element(By.ID, "request").is_displayed())
    assert "Owed: Documented excessive upper/lower lid skin" in browser.find_element(By.ID, "items").text
    browser.find_element(By.CSS_SELECTOR, "#items button").click()
    Select(browser.find_element(By.ID, "action")).select_by_value("deny")
    browser.find_element(By.ID, "reason").send_keys("Not functional.")
    browser.find_element(By.CSS_SELECTOR, "#decide button[type=submit]").click()
    status = browser.find_element(By.ID, "status")
    WebDriverWait(browser, 10).until(lambda d: "400" in status.text)
    assert "policy_url" in status.text  # a denial without its policy link is refused
    Select(browser.find_element(By.ID, "action")).select_by_value("certify")
    browser.find_element(By.ID, "reason").clear()
    browser.find_element(By.CSS_SELECTOR, "#decide button[type=submit]").click()
    WebDriverWait(browser, 10).until(lambda d: "Recorded: item 1 certified." in status.text
                                     or "0 request(s) pended." in status.text)
    assert "certified (A1)" in browser.find_element(By.ID, "items").text
