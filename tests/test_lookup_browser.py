"""The lookup page in a real headless browser (Debian's chromium and chromedriver, driven by selenium).

Skipped only when chromium or chromedriver is not installed. Set ``COVREQ_LOOKUP_SCREENSHOT`` to a
path to save the screenshot used in docs/lookup.md.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Iterator

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.select import Select
from selenium.webdriver.support.ui import WebDriverWait

from service import create_app
from tests.service.serving import in_thread
from service.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER),
                                reason="chromium and chromedriver are not installed (apt-get install chromium chromium-driver)")


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The service on the bundled rules, on a free local port, in a thread."""
    settings = Settings(audit_path=tmp_path_factory.mktemp("audit") / "audit.jsonl")
    with in_thread(create_app(str(ROOT / "rules"), settings)) as url:
        yield url


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                 "--lang=en-US", "--window-size=1366,768",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))
    driver.set_window_size(1366, 768)
    yield driver
    driver.quit()


def open_page(browser: WebDriver, base_url: str) -> None:
    browser.get(f"{base_url}/lookup")
    WebDriverWait(browser, 10).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#payer option[value=medicare]")
                                     and d.find_elements(By.CSS_SELECTOR, "#place_of_service option[value='49']"))


def fill(browser: WebDriver, codes: str, day: str = "2024-03-14", pos: str = "22", payer: str = "medicare") -> None:
    Select(browser.find_element(By.ID, "payer")).select_by_value(payer)
    field = browser.find_element(By.ID, "codes")
    field.clear()
    field.send_keys(codes)
    browser.execute_script("document.getElementById('date_of_service').value = arguments[0]", day)
    Select(browser.find_element(By.ID, "place_of_service")).select_by_value(pos)


def answers(browser: WebDriver) -> list[dict[str, str]]:
    """Wait for the answers, then read each card's code, headline and text."""
    WebDriverWait(browser, 10).until(
        lambda d: d.find_element(By.ID, "answers").get_attribute("aria-busy") == "false"
        and d.find_elements(By.CSS_SELECTOR, "#answers article, #answers [role=alert]"))
    return [{"code": card.find_element(By.CSS_SELECTOR, ".code").text,
             "badge": card.find_element(By.CSS_SELECTOR, ".badge").text,
             "value": card.find_element(By.CSS_SELECTOR, "code.value").text,
             "text": card.text}
            for card in browser.find_elements(By.CSS_SELECTOR, "#answers article")]


def test_blepharoplasty_in_the_hospital_outpatient_department_needs_pa(browser: WebDriver, base_url: str) -> None:
    open_page(browser, base_url)
    assert browser.find_element(By.ID, "date_of_service").get_attribute("value")  # today by default
    fill(browser, "15823")
    browser.find_element(By.ID, "submit").click()
    [card] = answers(browser)
    assert (card["code"], card["badge"], card["value"]) == ("15823", "Prior authorization needed", "auth-needed")
    assert "Documentation checklist" in card["text"]
    assert "Supporting pre-operative photographs (when applicable)" in card["text"]
    assert "Blepharoplasty and related eyelid and brow surgery in a hospital OPD needs prior authorization" in card["text"]
    link = browser.find_element(By.CSS_SELECTOR, "#answers article a")
    assert link.get_attribute("href").startswith("https://www.cms.gov/")
    summary = browser.find_element(By.CSS_SELECTOR, "#answers .summary").text
    assert summary == "1 code for medicare on 2024-03-14: 1 prior authorization needed."
    box = browser.find_element(By.CSS_SELECTOR, "#answers .checklist input[type=checkbox]")
    label = browser.find_element(By.CSS_SELECTOR, f"label[for='{box.get_attribute('id')}']")
    label.click()
    assert box.is_selected()  # the checklist can be ticked off


def test_keyboard_only_and_a_conditional_answer_names_the_missing_fact(browser: WebDriver, base_url: str) -> None:
    open_page(browser, base_url)
    fill(browser, "36475", pos="")
    browser.find_element(By.ID, "codes").send_keys(Keys.ENTER)  # the form submits from the keyboard
    [card] = answers(browser)
    assert (card["badge"], card["value"]) == ("Depends on facts not given yet", "conditional")
    assert "What would settle it\nPlace of service" in card["text"]
    assert "Possible answers once known" in card["text"]
    browser.find_element(By.CSS_SELECTOR, "#answers button.link").send_keys(Keys.ENTER)
    assert browser.switch_to.active_element.get_attribute("id") == "place_of_service"
    Select(browser.find_element(By.ID, "place_of_service")).select_by_value("11")
    browser.find_element(By.ID, "submit").send_keys(Keys.ENTER)
    WebDriverWait(browser, 10).until(lambda d: "No prior authorization needed" in d.find_element(By.ID, "answers").text)


def test_paired_codes_are_one_order_and_plans_follow_the_payer(browser: WebDriver, base_url: str) -> None:
    open_page(browser, base_url)
    fill(browser, "64612, J0585")
    plans = [o.get_attribute("value") for o in browser.find_elements(By.CSS_SELECTOR, "#plan option")]
    assert plans == ["", "original-medicare-ffs"]
    browser.find_element(By.ID, "submit").click()
    assert [(c["code"], c["value"]) for c in answers(browser)] == [("64612", "auth-needed"), ("J0585", "auth-needed")]
    fill(browser, "64490", day="2024-06-03", pos="11", payer="alabama-medicaid")
    Select(browser.find_element(By.ID, "plan")).select_by_value("medicare-medicaid-dual")
    browser.find_element(By.ID, "submit").click()
    WebDriverWait(browser, 10).until(lambda d: "alabama-medicaid on 2024-06-03" in d.find_element(By.ID, "answers").text)
    assert [(c["code"], c["value"]) for c in answers(browser)] == [("64490", "no-auth")]


def test_documentation_owed_only_for_some_diagnoses_says_which_in_plain_english(browser: WebDriver,
                                                                                base_url: str) -> None:
    open_page(browser, base_url)
    fill(browser, "64612, J0585")
    browser.find_element(By.ID, "submit").click()
    card = answers(browser)[0]
    assert "Needed when a diagnosis is a chronic migraine code (G43.7*)" in card["text"]
    assert "Needed when a diagnosis is a dystonia code (G24*)" in card["text"]
    assert "overlaps" not in card["text"] and "Only when" not in card["text"]  # no rule syntax


def test_a_bad_code_is_reported_at_its_field(browser: WebDriver, base_url: str) -> None:
    open_page(browser, base_url)
    fill(browser, "15823 ABC")
    browser.find_element(By.ID, "submit").click()
    answers(browser)
    alert = browser.find_element(By.CSS_SELECTOR, "#answers [role=alert]")
    assert "'ABC' is not a CPT or HCPCS Level II code" in alert.text and "CPT / HCPCS codes" in alert.text
    assert browser.find_element(By.ID, "codes").get_attribute("aria-invalid") == "true"


def test_accessible_structure_local_resources_and_laptop_width(browser: WebDriver, base_url: str) -> None:
    open_page(browser, base_url)
    for control in browser.find_elements(By.CSS_SELECTOR, "input, select"):
        assert browser.find_elements(By.CSS_SELECTOR, f"label[for='{control.get_attribute('id')}']"), control
    assert len(browser.find_elements(By.CSS_SELECTOR, "fieldset > legend")) == 4
    assert browser.find_element(By.ID, "answers").get_attribute("aria-live") == "polite"
    resources = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert resources and all(url.startswith(base_url) for url in resources), resources
    overflow = browser.execute_script("return document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0  # no horizontal scrolling at 1366x768
    form, results = browser.find_element(By.ID, "lookup"), browser.find_element(By.ID, "results")
    assert results.location["x"] >= form.location["x"] + form.size["width"]  # side by side: answers stay in view
    codes = browser.find_element(By.ID, "codes")
    assert codes.location["y"] + codes.size["height"] < 600  # payer and codes on the first screen


def test_screenshot(browser: WebDriver, base_url: str, tmp_path: Path) -> None:
    """An answer and a conditional one; saved where ``COVREQ_LOOKUP_SCREENSHOT`` says (docs/img/lookup.png)."""
    browser.set_window_size(1366, 1200)
    try:
        open_page(browser, base_url)
        fill(browser, "15823 L1832", day="2022-05-01")
        browser.find_element(By.ID, "diagnoses").send_keys("H02.831")
        browser.find_element(By.ID, "submit").click()
        cards = answers(browser)
        assert [c["value"] for c in cards] == ["auth-needed", "conditional"]
        assert "What would settle it\nPatient's state" in cards[1]["text"]
        browser.execute_script("window.scrollTo(0, 0)")
        target = Path(os.environ.get("COVREQ_LOOKUP_SCREENSHOT") or tmp_path / "lookup.png")
        target.parent.mkdir(parents=True, exist_ok=True)
        assert browser.save_screenshot(str(target))
    finally:
        browser.set_window_size(1366, 768)


def test_the_payer_is_asked_for_and_names_and_plans_show_in_full(browser: WebDriver, base_url: str) -> None:
    """Regression (issue 15, item 13): the payer defaulted to the first one, long names were cut, plans
    showed raw ids."""
    open_page(browser, base_url)
    payer, plan = Select(browser.find_element(By.ID, "payer")), browser.find_element(By.ID, "plan")
    assert payer.first_selected_option.get_attribute("value") == "" and not plan.is_enabled()
    browser.find_element(By.ID, "codes").send_keys("15823", Keys.ENTER)  # no payer yet: nothing is sent
    assert browser.execute_script("return document.getElementById('payer').matches(':invalid')")
    assert browser.find_elements(By.CSS_SELECTOR, "#answers .placeholder")
    payer.select_by_value("alabama-medicaid")
    assert browser.find_element(By.ID, "payer-name").text == "Alabama Medicaid Agency"
    Select(plan).select_by_value("medicare-medicaid-dual")
    title = "Alabama Medicaid for Medicare/Medicaid dual-eligible recipients"
    assert Select(plan).first_selected_option.text == title
    name = browser.find_element(By.ID, "plan-name")
    assert name.text == title and name.size["width"] <= plan.size["width"]  # wraps under the select, whole


def test_every_cms_place_of_service_can_be_found_by_code_or_words(browser: WebDriver, base_url: str) -> None:
    """Regression (issue 15, item 13): place of service was a short fixed list (49 and others missing)."""
    open_page(browser, base_url)
    select = Select(browser.find_element(By.ID, "place_of_service"))
    assert len(select.options) == 53 and select.options[0].text == "Not known yet"
    assert browser.find_element(By.ID, "pos-count").text == "All 52 CMS places of service."
    search = browser.find_element(By.ID, "pos-search")
    search.send_keys("ambulance")
    assert [o.get_attribute("value") for o in select.options] == ["", "41", "42"]
    assert browser.find_element(By.ID, "pos-count").text == "2 of 52 places of service match."
    search.clear()
    search.send_keys("49")
    assert select.first_selected_option.text == "49 Independent Clinic"  # one match: chosen
    search.clear()
    search.send_keys("hotel")  # words of the definitions count: temporary lodging
    assert select.first_selected_option.get_attribute("value") == "16"


def test_the_submit_button_is_in_view_on_a_laptop_screen(browser: WebDriver, base_url: str) -> None:
    """Regression (issue 15, item 13): the submit button was below the fold at 1366x768."""
    open_page(browser, base_url)
    top, bottom, height = browser.execute_script(
        "const r = document.getElementById('submit').getBoundingClientRect(); return [r.top, r.bottom, innerHeight]")
    assert 0 <= top and bottom <= height


def test_a_conditional_checklist_says_it_applies_only_if_pa_is_needed_and_the_answer_prints(
        browser: WebDriver, base_url: str) -> None:
    """Regression (issue 15, item 13): a conditional answer showed its checklist unqualified, and an answer
    could not be printed for the chart."""
    open_page(browser, base_url)
    assert not browser.find_element(By.ID, "print").is_displayed()
    fill(browser, "15823 L1832", day="2022-05-01")
    browser.find_element(By.ID, "submit").click()
    cards = answers(browser)
    assert "Documentation checklist, if prior authorization turns out to be needed" in cards[1]["text"]
    assert "apply only if the facts above make prior authorization needed" in cards[1]["text"]
    assert "Documentation checklist\n" in cards[0]["text"]  # a definite answer: a plain checklist
    assert browser.find_element(By.ID, "print").is_displayed()
    browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {"media": "print"})
    try:
        shown = browser.execute_script(
            "return ['lookup', 'order', 'answers'].map(id => getComputedStyle(document.getElementById(id)).display)")
        assert shown[0] == "none" and shown[1] != "none" and shown[2] != "none"
        order = browser.find_element(By.ID, "order").text
        assert "Medicare fee-for-service (Original Medicare)" in order and "22 On Campus-Outpatient Hospital" in order
        link = browser.execute_script(
            "return getComputedStyle(document.querySelector('#answers article a'), '::after').content")
        assert "https://www.cms.gov/" in link  # the policy's address is printed
    finally:
        browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {"media": ""})


def test_the_page_loads_without_a_404(browser: WebDriver, base_url: str) -> None:
    """Regression (issue 15, item 13): the favicon was a 404."""
    browser.get_log("browser")  # what earlier tests logged
    open_page(browser, base_url)
    status = browser.execute_async_script(
        "const done = arguments[0]; fetch('/favicon.ico').then(r => done([r.status, r.url]))")
    assert status == [200, f"{base_url}/lookup/favicon.svg"]
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == []
