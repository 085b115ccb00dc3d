"""Program history and split orders: pauses, open other_codes, order_complete, payer and plan titles."""
from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import engine
from engine import RequestError
from engine.language.compiler import Compiler
from engine.language.checker import Checker
from engine.language.facts import OpenSet, fact_of, unsettled
from engine.language.parser import parse_condition
from engine.evaluation.request import parse_request

HEAD = "title: Power chairs\npayer: acme\neffective: 2019-01-01\nsource: {url: 'https://example.org/pmd'}\n"
PAUSED = HEAD + """codes: [K0856]
pauses:
  - {start: 2020-03-29, end: 2020-08-02, reason: "Paused during the public health emergency."}
  - {start: 2024-01-01, reason: "Suspended until further notice."}
rules: [{id: all, when: true, pa_needed: auth-needed, reason: Needs PA.}]
"""
PAIRED = HEAD.replace("Power chairs", "Toxin") + """codes: [J0585, "64612"]
rules:
  - {id: drug-alone, when: "code in {J0585} and not (other_codes overlaps {64612})", pa_needed: no-auth}
  - {id: pair, when: true, pa_needed: auth-needed}
"""


def load(tmp_path: Path, text: str, payer: str = "") -> engine.RuleSet:
    """A tree with policy ``p`` (and ``payer`` as the payer file) in its payer folder ``acme``."""
    folder = tmp_path / "acme"
    folder.mkdir(exist_ok=True)
    (folder / "p.yaml").write_text("id: p\n" + text, encoding="utf-8")
    if payer:
        (folder / "_payer.yaml").write_text(payer, encoding="utf-8")
    return engine.load(tmp_path)


def decide(rules: engine.RuleSet, dos: str, **extra: Any) -> dict[str, Any]:
    body = {"payer": "acme", "date_of_service": dos, "services": [{"code": "K0856"}], **extra}
    return rules.evaluate(body)["decisions"][0]  # type: ignore[no-any-return]


@pytest.mark.parametrize("dos, expected", [
    ("2020-03-28", "auth-needed"), ("2020-03-29", "no-auth"), ("2020-08-02", "no-auth"),
    ("2020-08-03", "auth-needed"), ("2023-12-31", "auth-needed"), ("2024-01-01", "no-auth"),
    ("2030-06-01", "no-auth")])
def test_a_date_of_service_inside_a_pause_needs_no_pa(tmp_path: Path, dos: str, expected: str) -> None:
    decision = decide(load(tmp_path, PAUSED), dos)
    assert decision["pa_needed"] == expected
    assert decision["policies"][0]["id"] == "p"  # the paused policy still answers, with its pause's reason
    if expected == "no-auth":
        assert decision["reasons"][0] in ("Paused during the public health emergency.", "Suspended until further notice.")
        assert decision["documentation"] == []


def test_a_pause_wins_over_an_authorization_and_unknown_facts(tmp_path: Path) -> None:
    text = PAUSED.replace("when: true", "when: state == 'NY'")
    decision = decide(load(tmp_path, text), "2020-05-01")
    assert (decision["pa_needed"], decision["info_needed"]) == ("no-auth", [])
    assert decide(load(tmp_path, text), "2020-09-01")["pa_needed"] == "conditional"


def test_pauses_are_listed_with_the_policy_versions(tmp_path: Path) -> None:
    versions = load(tmp_path, PAUSED).policy("p")["versions"]  # type: ignore[index]
    assert versions[0]["pauses"] == [
        {"start": "2020-03-29", "end": "2020-08-02", "reason": "Paused during the public health emergency.",
         "url": None},
        {"start": "2024-01-01", "end": None, "reason": "Suspended until further notice.", "url": None}]


def test_a_pause_ending_before_it_starts_is_a_located_date_error(tmp_path: Path) -> None:
    bad = PAUSED.replace("end: 2020-08-02", "end: 2020-02-01")
    with pytest.raises(engine.LoadError) as info:
        load(tmp_path, bad)
    [problem] = info.value.problems
    assert (problem.code, problem.line) == ("E-date", 8)
    assert "pause end 2020-02-01 is before its start 2020-03-29" in problem.message


def test_a_pause_needs_a_start_and_a_reason(tmp_path: Path) -> None:
    with pytest.raises(engine.LoadError) as info:
        load(tmp_path, PAUSED.replace('start: 2024-01-01, reason: "Suspended until further notice."', "end: 2024-01-01"))
    assert {p.code for p in info.value.problems} == {"E-schema"}


def test_a_plan_override_inherits_its_bases_pauses(tmp_path: Path) -> None:
    (tmp_path / "acme").mkdir()
    (tmp_path / "acme" / "child.yaml").write_text("id: child\nextends: p\nplans: [gold]\n", encoding="utf-8")
    rules = load(tmp_path, PAUSED)
    assert decide(rules, "2020-05-01", plan="gold")["pa_needed"] == "no-auth"
    assert decide(rules, "2020-09-01", plan="gold")["pa_needed"] == "auth-needed"


def pair_answers(rules: engine.RuleSet, codes: list[str], **extra: Any) -> list[tuple[str, list[str]]]:
    body = {"payer": "acme", "date_of_service": "2024-05-01", "services": [{"code": c} for c in codes], **extra}
    return [(d["pa_needed"], d["info_needed"]) for d in rules.evaluate(body)["decisions"]]


def test_a_partner_not_on_the_request_makes_the_answer_conditional_on_other_codes(tmp_path: Path) -> None:
    rules = load(tmp_path, PAIRED)
    assert pair_answers(rules, ["J0585"]) == [("conditional", ["other_codes"])]
    assert pair_answers(rules, ["J0585", "64612"]) == [("auth-needed", []), ("auth-needed", [])]


def test_an_order_said_to_be_complete_settles_a_missing_partner(tmp_path: Path) -> None:
    rules = load(tmp_path, PAIRED)
    assert pair_answers(rules, ["J0585"], order_complete=True) == [("no-auth", [])]
    assert pair_answers(rules, ["J0585"], order_complete=False) == [("conditional", ["other_codes"])]


def test_request_codes_is_the_closed_view_of_the_same_lines(tmp_path: Path) -> None:
    text = PAIRED.replace("other_codes overlaps", "request_codes overlaps")
    assert pair_answers(load(tmp_path, text), ["J0585"]) == [("no-auth", [])]


def test_an_explain_trace_reads_other_codes_a_line_derives_on_demand(tmp_path: Path) -> None:
    body = {"payer": "acme", "date_of_service": "2024-05-01", "services": [{"code": "J0585"}, {"code": "64612"}],
            "explain": True}
    trace = load(tmp_path, PAIRED).evaluate(body)["decisions"][0]["trace"]
    predicates = {p["expr"]: p["result"] for p in trace[0]["predicates"]}
    assert predicates["other_codes overlaps {64612}"] == "true" and trace[0]["result"] == "false"


@given(st.lists(st.sampled_from(["J0585", "64612", "E0100", "97110"]), min_size=2, max_size=8), st.booleans())
def test_each_line_derives_the_codes_of_the_other_lines_when_read(codes: list[str], complete: bool) -> None:
    body = {"payer": "acme", "services": [{"code": c} for c in codes], "order_complete": complete}
    for at, line in enumerate(parse_request(body, dt.date(2024, 5, 1)).lines):
        assert "other_codes" not in line.facts  # nothing is built until a condition reads it
        others = frozenset(codes[:at] + codes[at + 1:])
        assert line.facts["request_codes"] == others and type(line.facts["request_codes"]) is frozenset
        assert line.facts["other_codes"] == others and (type(line.facts["other_codes"]) is OpenSet) != complete
        assert fact_of(line.facts, "other_codes") is line.facts["other_codes"]


@pytest.mark.parametrize("value", ["yes", 1, None, [True]])
def test_order_complete_must_be_true_or_false(tmp_path: Path, value: Any) -> None:
    body = {"payer": "acme", "services": [{"code": "J0585"}], "order_complete": value}
    if value is None:  # JSON null: the field is absent
        load(tmp_path, PAIRED).evaluate(body)
        return
    with pytest.raises(RequestError) as info:
        load(tmp_path, PAIRED).evaluate(body)
    assert (info.value.location, info.value.message) == ("order_complete", "must be true or false")


def _truth(condition: str, ctx: dict[str, Any]) -> bool | None:
    expr = parse_condition(condition)
    return Compiler(Checker().check(expr)).test(expr)(ctx)  # type: ignore[no-any-return]


codes = st.frozensets(st.sampled_from(["64612", "64615", "J0585", "99213"]), max_size=4)


@settings(max_examples=100, deadline=None)
@given(known=codes, more=codes)
def test_an_open_set_answers_what_every_completion_of_it_agrees_on(known: frozenset[str], more: frozenset[str]) -> None:
    """Kleene soundness: a definite answer on the open set is the answer on any set that adds codes to it."""
    for condition in ("other_codes overlaps {64612, 64615}", 'other_codes contains "J0585"',
                      "not (other_codes overlaps {99213})"):
        open_answer = _truth(condition, {"other_codes": OpenSet(known)})
        complete = _truth(condition, {"other_codes": known | more})
        assert complete is not None
        if open_answer is not None:
            assert open_answer == complete
        assert _truth(condition, {"other_codes": known}) in (True, False)


def test_unsettled_facts_are_missing_ones_and_open_sets() -> None:
    assert unsettled(None) and unsettled(OpenSet({"J0585"}))
    assert not unsettled(frozenset()) and not unsettled("22")


def test_payer_and_plan_titles_come_from_the_payer_file(tmp_path: Path) -> None:
    payer = "payer: acme\ntitle: Acme Health\nplans:\n  gold: Acme Gold PPO\n"
    rules = load(tmp_path, PAUSED, payer)
    assert rules.payer_title("acme") == "Acme Health"
    assert rules.plan_title("acme", "gold") == "Acme Gold PPO"
    assert rules.plan_title("acme", "silver") == "silver"
    assert rules.plan_titles("acme") == {"gold": "Acme Gold PPO"}
    assert rules.plan_titles("nobody") == {} and rules.plan_title("nobody", "x") == "x"


def test_a_bad_pause_of_a_base_is_reported_once_at_the_base(tmp_path: Path) -> None:
    (tmp_path / "acme").mkdir()
    (tmp_path / "acme" / "child.yaml").write_text("id: child\nextends: p\nplans: [gold]\n", encoding="utf-8")
    with pytest.raises(engine.LoadError) as info:
        load(tmp_path, PAUSED.replace("end: 2020-08-02", "end: 2020-02-01"))
    assert [(Path(p.path).name, p.line, p.code) for p in info.value.problems] == [("p.yaml", 8, "E-date")]


def test_explain_shows_the_pause_that_answered(tmp_path: Path) -> None:
    decision = decide(load(tmp_path, PAUSED), "2020-05-01", explain=True)
    assert decision["trace"] == [{"policy": "p", "version": "2019-01-01", "location": decision["trace"][0]["location"],
                                  "paused": {"start": "2020-03-29", "end": "2020-08-02",
                                             "reason": "Paused during the public health emergency."}}]
    assert decision["trace"][0]["location"].endswith("p.yaml:1:5")
    assert [t["rule"] for t in decide(load(tmp_path, PAUSED), "2020-09-01", explain=True)["trace"]] == ["all"]
