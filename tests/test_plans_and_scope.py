"""Unknown plans are refused, and codes no policy lists are answered from the payer's declared scope
(issue 22, items 2 and 3)."""
from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import engine
from engine import LoadError, RequestError
from engine.loading.loader import read_tree

ROOT = Path(__file__).resolve().parent.parent
FLORIDA_BLUE_PLANS = ("commercial-aso", "commercial-hmo", "commercial-ppo")

POLICY = """\
id: acme-mri
title: MRI
payer: acme
{plans}effective: 2024-01-01
source: {{url: "https://policies.acme.test/mri"}}
codes: ["70551"]
rules:
  - when: true
    pa_needed: auth-needed
"""


@pytest.fixture(scope="module")
def bundled() -> engine.RuleSet:
    return engine.load(ROOT / "rules")


def tree(tmp_path: Path, payer_file: str | None, plans: str = "") -> Path:
    """A one-policy tree for payer ``acme`` with ``payer_file`` as its ``_payer.yaml``."""
    (tmp_path / "mri.yaml").write_text(POLICY.format(plans=plans), encoding="utf-8")
    if payer_file is not None:
        (tmp_path / "_payer.yaml").write_text(payer_file, encoding="utf-8")
    return tmp_path


def line(rules: engine.RuleSet, code: str = "99213", **body: object) -> dict[str, object]:
    request = {"payer": "acme", "date_of_service": "2024-03-01", "services": [{"code": code}], **body}
    return rules.evaluate(request)["decisions"][0]  # type: ignore[no-any-return]


# --- item 2: a plan the payer does not list is refused --------------------------------------------

def test_a_misspelt_plan_is_refused_at_plan_with_a_did_you_mean_and_the_known_plans(bundled: engine.RuleSet) -> None:
    with pytest.raises(RequestError) as raised:
        bundled.evaluate({"payer": "florida-blue", "plan": "commercial-hmo-typo", "date_of_service": "2024-02-01",
                          "services": [{"code": "99213"}]})
    assert raised.value.location == "plan"
    assert "did you mean 'commercial-hmo'?" in raised.value.message
    assert all(plan in raised.value.message for plan in FLORIDA_BLUE_PLANS)


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=1, max_size=256).filter(lambda p: p.strip() and p.strip() not in FLORIDA_BLUE_PLANS))
def test_any_plan_the_payer_does_not_list_is_refused(bundled: engine.RuleSet, plan: str) -> None:
    with pytest.raises(RequestError) as raised:
        bundled.evaluate({"payer": "florida-blue", "plan": plan, "services": [{"code": "95810"}]})
    assert raised.value.location == "plan"


@pytest.mark.parametrize("plan", FLORIDA_BLUE_PLANS)
def test_every_listed_plan_is_answered(bundled: engine.RuleSet, plan: str) -> None:
    answer = bundled.evaluate({"payer": "florida-blue", "plan": f" {plan} ", "date_of_service": "2024-02-01",
                               "services": [{"code": "95810"}]})
    assert answer["decisions"][0]["policies"][0]["id"] == "florida-blue-sleep-studies"


def test_without_a_plan_list_the_plans_policies_name_are_the_known_ones(tmp_path: Path) -> None:
    rules = engine.load(tree(tmp_path, None, plans="plans: [gold]\n"))
    assert rules.plans("acme") == {"gold"}
    assert line(rules, "70551", plan="gold")["pa_needed"] == "auth-needed"
    with pytest.raises(RequestError, match="unknown plan 'golt' for payer 'acme'; did you mean 'gold'"):
        line(rules, plan="golt")


def test_a_payer_without_plans_refuses_any_plan(tmp_path: Path) -> None:
    rules = engine.load(tree(tmp_path, None))
    with pytest.raises(RequestError, match="payer 'acme' has no plans in this rule set; send no plan"):
        line(rules, plan="gold")
    assert line(rules, "70551")["pa_needed"] == "auth-needed"


def test_a_policy_naming_a_plan_its_payer_file_does_not_list_is_an_error_at_plans(tmp_path: Path) -> None:
    tree(tmp_path, "payer: acme\nplans: {gold: Gold, silver: Silver}\n", plans="plans: [gold, silvr]\n")
    problems = read_tree(tmp_path).problems
    assert [(Path(p.path).name, p.line, p.column, p.code) for p in problems] == [("mri.yaml", 4, 8, "E-plan")]
    assert "plan 'silvr' is not one of acme's plans in _payer.yaml (gold, silver); did you mean 'silver'?" \
        in problems[0].message


# --- item 3: codes no policy lists, by the payer's declared scope ---------------------------------

def test_without_a_scope_an_unlisted_code_is_unknown_and_says_covreq_does_not_know(tmp_path: Path) -> None:
    rules = engine.load(tree(tmp_path, "payer: acme\ntitle: Acme Health\n"))
    decision = line(rules)
    assert (decision["pa_needed"], decision["covered"], decision["policies"]) == ("unknown", "unknown", [])
    assert "possible" not in decision and decision["info_needed"] == []
    assert decision["reasons"] == [
        "covreq does not know whether 99213 needs prior authorization: the rules it holds for Acme Health are "
        "some of its prior-authorization programs, not its whole list, and none in force on 2024-03-01 lists "
        "this code. Ask Acme Health."]


def test_a_complete_list_answers_no_auth_saying_the_code_is_not_on_it(tmp_path: Path) -> None:
    rules = engine.load(tree(tmp_path, "payer: acme\ntitle: Acme Health\nscope: complete\n"))
    decision = line(rules)
    assert (decision["pa_needed"], decision["covered"]) == ("no-auth", "covered")
    assert decision["reasons"] == ["99213 is not on Acme Health's prior-authorization list: "
                                   "no prior authorization is needed."]


def test_a_plan_may_declare_its_own_scope_and_no_plan_is_complete_only_if_every_plan_is(tmp_path: Path) -> None:
    rules = engine.load(tree(tmp_path, "payer: acme\nscope: complete\n"
                                       "plans: {gold: {title: Gold, scope: programs}, silver: Silver}\n"))
    answers = {plan: line(rules, **({"plan": plan} if plan else {}))["pa_needed"] for plan in ("gold", "silver", None)}
    for _ in range(2):  # the second time from the decision templates: kept per payer and plan
        again = {plan: line(rules, **({"plan": plan} if plan else {}))["pa_needed"] for plan in ("gold", "silver", None)}
        assert again == answers == {"gold": "unknown", "silver": "no-auth", None: "unknown"}
    assert line(rules, plan="gold")["reasons"][0].startswith("covreq does not know whether 99213 needs prior "
                                                             "authorization for Gold")


def test_the_payer_default_reason_words_either_answer(tmp_path: Path) -> None:
    rules = engine.load(tree(tmp_path, "payer: acme\ndefault: {reason: Ask Acme's PA line.}\n"))
    assert line(rules)["reasons"] == ["Ask Acme's PA line."] and line(rules)["pa_needed"] == "unknown"


@pytest.mark.parametrize("key, column", [("pa_needed: no-auth", 14), ("covered: covered", 12)])
def test_a_default_answer_without_a_complete_scope_is_an_error_at_the_key(tmp_path: Path, key: str,
                                                                          column: int) -> None:
    tree(tmp_path, f"payer: acme\nscope: programs\ndefault:\n  {key}\n  reason: x\n")
    problems = read_tree(tmp_path).problems
    assert [(Path(p.path).name, p.line, p.column, p.code) for p in problems] == [("_payer.yaml", 4, column, "E-scope")]
    assert "add `scope: complete`" in problems[0].message
    with pytest.raises(LoadError):
        engine.load(tmp_path)


def test_a_misspelt_scope_is_a_schema_error_located_at_it(tmp_path: Path) -> None:
    tree(tmp_path, "payer: acme\nscope: compleat\n")
    problems = read_tree(tmp_path).problems
    assert [(p.line, p.column, p.code) for p in problems] == [(2, 8, "E-schema")]
    assert "compleat" in problems[0].message


def test_every_bundled_payer_declares_its_scope_and_none_claims_a_complete_list(bundled: engine.RuleSet) -> None:
    for payer in bundled.payers():
        text = (ROOT / "rules" / payer / "_payer.yaml").read_text(encoding="utf-8")
        assert "\nscope: programs\n" in text, payer
        assert bundled.scope(payer) == "programs"
    decision = bundled.evaluate({"payer": "medicare", "plan": "original-medicare-ffs", "date_of_service": "2024-03-14",
                                 "services": [{"code": "99213"}]})["decisions"][0]
    assert (decision["pa_needed"], decision["covered"]) == ("unknown", "unknown")
    assert decision["reasons"][0].startswith("covreq does not know whether this code needs Medicare prior authorization")


def test_a_condition_testing_a_plan_the_payer_does_not_know_is_an_error(tmp_path: Path) -> None:
    """Regression (issue 27, item 1): a misspelt plan was only a lint warning; it is a load error."""
    tree(tmp_path, "payer: acme\nplans: {gold: Gold, silver: Silver}\n")
    (tmp_path / "mri.yaml").write_text(POLICY.format(plans="").replace("when: true", 'when: plan == "golt"'),
                                       encoding="utf-8")
    findings = [p for p in read_tree(tmp_path).problems if p.code == "E-unknown-value"]
    assert [(f.line, f.column) for f in findings] == [(8, 19)]
    assert findings[0].message.endswith("(its plans are gold, silver), so plan can never equal it; "
                                        "did you mean 'gold'?")


def test_a_complete_list_whose_default_needs_authorization_says_so(tmp_path: Path) -> None:
    rules = engine.load(tree(tmp_path, "payer: acme\ntitle: Acme\nscope: complete\ndefault: {pa_needed: auth-needed}\n"))
    decision = line(rules)
    assert (decision["pa_needed"], decision["covered"]) == ("auth-needed", "covered")
    assert decision["reasons"] == ["99213 is named by no Acme policy; Acme's rules answer every code they do not "
                                   "name auth-needed."]
