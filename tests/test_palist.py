"""The published prior-authorization list (engine/publishing/palist.py, engine/publishing/palist_output.py, `covreq report
pa-list`): what it lists on a date, how it words conditional requirements, and its three formats."""
from __future__ import annotations

import csv
import datetime as dt
import io
import json
import shutil
from pathlib import Path

import pytest

import engine
from covreq.cli import main
from engine.publishing.palist import ALWAYS, CONDITIONAL, PaListError, pa_list
from engine.publishing.palist_output import CSV_COLUMNS, render_pa_list
from engine.policy import AUTH_NEEDED, NO_AUTH

ROOT = Path(__file__).resolve().parent.parent
GOOD = Path(__file__).resolve().parent / "fixtures" / "good"
DAY = dt.date(2026, 3, 1)


@pytest.fixture(scope="module")
def bundled() -> engine.RuleSet:
    return engine.load(ROOT / "rules")


def _item(listing: engine.publishing.palist.PaList, code: str, policy: str) -> engine.publishing.palist.Item | None:
    return next((i for i in listing.items if i.code == code and i.policy.id == policy), None)


def test_medicare_2026_lists_blepharoplasty_for_the_hospital_outpatient_department(bundled: engine.RuleSet) -> None:
    item = _item(pa_list(bundled, "medicare", DAY), "15823", "medicare-opd-blepharoplasty")
    assert item is not None and item.requirement == CONDITIONAL and item.system == "CPT"
    assert item.settings_text() == "place of service 19, 22; type of bill 13*"
    assert [s.pa_needed for s in item.steps] == [NO_AUTH, NO_AUTH, NO_AUTH, AUTH_NEEDED]
    assert item.steps[0].when == 'provider.exemptions contains "medicare-opd-pa"'
    # in plain English, value sets written out for readers without the policy file, with the author's reason
    assert ("the place of service is not one of the opd pos (19, 22) (The program covers hospital outpatient "
            "departments only") in item.condition()
    assert item.steps[2].when == 'not known(type_of_bill) and place_of_service not in {"19", "22"}'  # for programs
    assert item.condition().startswith("Needed unless ")
    assert (item.effective, item.end) == (dt.date(2020, 7, 1), None)


def test_a_code_removed_from_a_list_before_the_date_is_absent_and_present_before(bundled: engine.RuleSet) -> None:
    assert _item(pa_list(bundled, "medicare", DAY), "67911", "medicare-opd-blepharoplasty") is None
    before = _item(pa_list(bundled, "medicare", dt.date(2021, 6, 1)), "67911", "medicare-opd-blepharoplasty")
    assert before is not None and before.end == dt.date(2022, 1, 6)


def test_a_policy_not_yet_in_force_lists_nothing(bundled: engine.RuleSet) -> None:
    listing = pa_list(bundled, "medicare", dt.date(2019, 1, 1))
    assert not [i for i in listing.items if i.policy.id == "medicare-opd-blepharoplasty"]


@pytest.mark.parametrize("payer", ["medicare", "cigna", "florida-blue", "alabama-medicaid", "unitedhealthcare"])
def test_every_listed_code_needs_pa_by_the_evaluator_and_always_means_whatever_else_is_said(
        bundled: engine.RuleSet, payer: str) -> None:
    """The list agrees with evaluation: an ``always`` code answers auth-needed for a request giving
    nothing but the code; a conditional one answers auth-needed or conditional, never no-auth, and
    in a setting the list names it can need PA."""
    for plan in [None, *sorted(bundled.plans(payer))]:
        listing = pa_list(bundled, payer, DAY, plan)
        for item in listing.items[::7]:  # every seventh keeps the test quick; the set changes with the rules
            request = {"payer": payer, "date_of_service": DAY.isoformat(), "services": [{"code": item.code}]}
            if plan:
                request["plan"] = plan
            answer = bundled.evaluate(request)["decisions"][0]
            assert answer["pa_needed"] != NO_AUTH, (payer, plan, item.code)
            if item.requirement == ALWAYS:
                assert answer["pa_needed"] == AUTH_NEEDED, (payer, plan, item.code)
            for setting in item.settings:
                if setting.fact == "place_of_service" and setting.only:
                    placed = bundled.evaluate({**request, "place_of_service": setting.only[0]})["decisions"][0]
                    assert placed["pa_needed"] != NO_AUTH, (payer, plan, item.code, setting)


def test_a_plan_whose_rules_exclude_it_lists_nothing_and_other_plans_list_the_codes_unconditionally(
        bundled: engine.RuleSet) -> None:
    assert pa_list(bundled, "florida-blue", DAY, "commercial-aso").items == ()
    ppo = pa_list(bundled, "florida-blue", DAY, "commercial-ppo")
    assert ppo.items and all(i.requirement == ALWAYS for i in ppo.items)
    anyplan = pa_list(bundled, "florida-blue", DAY)
    assert all("unless the plan is commercial-aso" in i.condition() for i in anyplan.items)
    assert all(i.steps[0].when == 'plan == "commercial-aso"' for i in anyplan.items)


def test_settings_say_any_place_except_those_the_rules_exempt_and_plan_overrides_apply() -> None:
    rules = engine.load(GOOD)
    listing = pa_list(rules, "acme", dt.date(2024, 2, 1), "commercial")
    mri = _item(listing, "70551", "acme-imaging")
    assert mri is not None and mri.settings_text() == "any place of service except 23, 21, 20"
    assert mri.condition() == ("Needed unless the place of service is one of the no pa settings (23, 21, 20) "
                               "(Emergency, urgent care and inpatient imaging needs no authorization).")
    advantage = pa_list(rules, "acme", dt.date(2024, 2, 1), "advantage")
    assert {i.code for i in advantage.items} == {"74176", "74177", "74178"}  # brain MRI freed by the override
    assert {i.policy.id for i in advantage.items} == {"acme-imaging-advantage"}
    assert {i.code for i in pa_list(rules, "acme", dt.date(2024, 7, 1), "commercial").items} == \
        {"70551", "70552", "70553"}  # the CT group ended on 2024-06-30


def _tree(tmp_path: Path, policy: str) -> engine.RuleSet:
    (tmp_path / "acme").mkdir(exist_ok=True)
    shutil.copy(GOOD / "acme" / "_payer.yaml", tmp_path / "acme" / "_payer.yaml")
    (tmp_path / "acme" / "p.yaml").write_text(policy, encoding="utf-8")
    return engine.load(tmp_path)


POLICY = """id: acme-p
title: "{title}"
payer: acme
version: "1"
effective: 2025-01-01
source: {{url: "https://example.org/p"}}
codes: ["97110", "97112", 97530-97533]
rules:
  - id: child
    when: patient.age < 18 and code != "97112"
    pa_needed: auth-needed
    reason: Therapy for children needs authorization.
default: {{pa_needed: no-auth}}
"""


def test_a_code_needing_pa_only_under_a_condition_is_listed_with_it_and_a_code_never_needing_it_is_not(
        tmp_path: Path) -> None:
    listing = pa_list(_tree(tmp_path, POLICY.format(title="Therapy")), "acme", DAY)
    assert [i.code for i in listing.items] == ["97110", "97530", "97531", "97532", "97533"]  # ranges written out
    first = listing.items[0]
    assert first.requirement == CONDITIONAL and first.settings_text() == "any setting"
    assert first.condition() == ("Needed only when the patient's age is less than 18 (Therapy for children needs "
                                 "authorization).")


def test_a_range_too_long_to_write_out_is_one_row(tmp_path: Path) -> None:
    policy = POLICY.format(title="Supplies").replace('codes: ["97110", "97112", 97530-97533]', "codes: [A0001-A2500]")
    listing = pa_list(_tree(tmp_path, policy.replace(' and code != "97112"', "")), "acme", DAY)
    assert [(i.code, i.system, i.requirement) for i in listing.items] == [("A0001-A2500", "HCPCS", CONDITIONAL)]


def test_a_setting_no_single_value_decides_is_left_to_the_condition(tmp_path: Path) -> None:
    policy = POLICY.format(title="Therapy").replace(
        'patient.age < 18 and code != "97112"', 'not known(place_of_service) and not known(type_of_bill)')
    [first, *_] = pa_list(_tree(tmp_path, policy), "acme", DAY).items
    assert first.settings_text() == "place of service: as the condition says; type of bill: as the condition says"
    assert first.condition().startswith("Needed only when the place of service is not known and the type of bill is "
                                        "not known")


def test_unknown_payer_and_plan_are_refused_with_the_known_names(bundled: engine.RuleSet) -> None:
    with pytest.raises(PaListError, match="unknown payer 'medicar'.*did you mean 'medicare'"):
        pa_list(bundled, "medicar", DAY)
    with pytest.raises(PaListError, match="its plans: original-medicare-ffs"):
        pa_list(bundled, "medicare", DAY, "gold")


def test_json_csv_and_html_carry_the_same_entries(bundled: engine.RuleSet) -> None:
    listing = pa_list(bundled, "medicare", DAY)
    as_json = json.loads(render_pa_list(listing, "json"))
    assert as_json["payer"] == "medicare" and as_json["date"] == "2026-03-01" and as_json["scope"] == "programs"
    assert len(as_json["items"]) == len(listing.items)
    blepharoplasty = next(i for i in as_json["items"]
                          if i["code"] == "15823" and i["policy"]["id"] == "medicare-opd-blepharoplasty")
    assert blepharoplasty["settings"]["place_of_service"] == {"only": ["19", "22"], "except": []}
    assert blepharoplasty["policy"]["url"].startswith("https://www.cms.gov/")
    rows = list(csv.DictReader(io.StringIO(render_pa_list(listing, "csv"))))
    assert tuple(rows[0]) == CSV_COLUMNS and len(rows) == len(listing.items)
    row = next(r for r in rows if r["code"] == "15823" and r["policy_id"] == "medicare-opd-blepharoplasty")
    assert row["settings"] == "place of service 19, 22; type of bill 13*" and row["effective"] == "2020-07-01"
    page = render_pa_list(listing, "html", "/lookup/lookup.css")
    assert page.count("<tr><td>") == len(listing.items) and '<link rel="stylesheet" href="/lookup/lookup.css">' in page
    assert "<script" not in page and "style=" not in page


def test_hostile_titles_are_escaped_in_html_and_never_a_formula_in_csv(tmp_path: Path) -> None:
    listing = pa_list(_tree(tmp_path, POLICY.format(title='=HYPERLINK(\\"x\\")<script>alert(1)</script>')), "acme", DAY)
    page = render_pa_list(listing, "html")
    assert "<script>" not in page and "&lt;script&gt;" in page
    rows = list(csv.DictReader(io.StringIO(render_pa_list(listing, "csv"))))
    assert rows[0]["policy_title"].startswith("'=HYPERLINK")


def test_cli_writes_each_format_and_exits_by_the_usual_codes(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    rules = str(ROOT / "rules")
    assert main(["report", "pa-list", "--rules", rules, "--payer", "medicare", "--date", "2026-03-01"]) == 0
    assert capsys.readouterr().out.startswith(",".join(CSV_COLUMNS) + "\n")
    assert main(["report", "pa-list", "--rules", rules, "--payer", "cigna", "--plan", "commercial",
                 "--date", "2026-03-01", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["plan_title"]
    assert main(["report", "pa-list", "--rules", rules, "--payer", "nobody", "--date", "2026-03-01"]) == 2
    assert "unknown payer 'nobody'" in capsys.readouterr().err
    (tmp_path / "acme").mkdir()
    (tmp_path / "acme" / "p.yaml").write_text("id: [\n", encoding="utf-8")
    assert main(["report", "pa-list", "--rules", str(tmp_path), "--payer", "acme", "--date", "2026-03-01"]) == 1
    assert "p.yaml:" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["report", "pa-list", "--rules", rules, "--payer", "medicare", "--date", "March 1"])
