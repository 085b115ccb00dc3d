"""Decisions: the blepharoplasty example, hit policy, unknowns, authorizations, plans, versions, requests."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import engine
from engine import RequestError

BLEPH = {"payer": "medicare", "plan": "original-medicare-ffs", "date_of_service": "2023-03-14",
         "services": [{"code": "15823", "system": "CPT"}]}


def decide(rules: engine.RuleSet, **changes: Any) -> dict[str, Any]:
    body = {**BLEPH, **changes}
    return rules.evaluate(body)["decisions"][0]


def test_blepharoplasty_example_is_conditional_without_place_of_service(good_rules: engine.RuleSet) -> None:
    decision = decide(good_rules)
    assert decision["pa_needed"] == "conditional"
    assert decision["info_needed"] == ["place_of_service"]
    assert decision["possible"] == ["auth-needed", "no-auth"]
    assert decision["policies"][0]["id"] == "medicare-opd-blepharoplasty"


@pytest.mark.parametrize("pos, expected", [("22", "auth-needed"), ("19", "auth-needed"), ("11", "no-auth"),
                                           ("24", "no-auth")])
def test_blepharoplasty_example_answers_by_setting(good_rules: engine.RuleSet, pos: str, expected: str) -> None:
    decision = decide(good_rules, place_of_service=pos)
    assert decision["pa_needed"] == expected
    assert decision["info_needed"] == []
    ids = {d["id"] for d in decision["documentation"]}
    assert ids == ({"history-and-physical", "photographs", "visual-fields"} if expected == "auth-needed" else set())


def test_conditional_documentation_says_when_in_plain_english_and_explain_keeps_the_condition(
        good_rules: engine.RuleSet) -> None:
    docs = {d["id"]: d for d in decide(good_rules, place_of_service="22")["documentation"]}
    assert docs["visual-fields"]["required_when"] == "when a diagnosis is H53.4*"
    assert "condition" not in docs["visual-fields"]  # the rule syntax only where authors look
    assert "required_when" not in docs["photographs"]
    explained = {d["id"]: d for d in decide(good_rules, place_of_service="22", explain=True)["documentation"]}
    assert explained["visual-fields"]["condition"] == "diagnoses overlaps {H53.4*}"
    assert explained["visual-fields"]["required_when"] == "when a diagnosis is H53.4*"
    with_dx = {d["id"]: d for d in decide(good_rules, place_of_service="22", diagnoses=["H53.40"])["documentation"]}
    assert "required_when" not in with_dx["visual-fields"]
    without = {d["id"] for d in decide(good_rules, place_of_service="22", diagnoses=["H02.831"])["documentation"]}
    assert "visual-fields" not in without


def test_code_removed_later_stops_being_governed(good_rules: engine.RuleSet) -> None:
    assert decide(good_rules, place_of_service="22", date_of_service="2022-01-06",
                  services=[{"code": "67911"}])["pa_needed"] == "auth-needed"
    after = decide(good_rules, place_of_service="22", date_of_service="2022-01-07", services=[{"code": "67911"}])
    assert after["pa_needed"] == "unknown" and after["policies"] == []  # Medicare's rules: programs only


def test_policy_start_date_boundary(good_rules: engine.RuleSet) -> None:
    assert decide(good_rules, place_of_service="22", date_of_service="2020-06-30")["pa_needed"] == "unknown"
    assert decide(good_rules, place_of_service="22", date_of_service="2020-07-01")["pa_needed"] == "auth-needed"


@pytest.mark.parametrize("dos, expected", [("2023-03-14", "satisfied"), ("2023-03-15", "auth-needed"),
                                           ("2022-11-14", "auth-needed")])
def test_authorization_is_valid_120_days_counting_the_decision_day(good_rules: engine.RuleSet, dos: str,
                                                                   expected: str) -> None:
    auth = [{"id": "UTN1", "code": "15823", "start": "2022-11-15"}]
    decision = decide(good_rules, place_of_service="22", date_of_service=dos, authorizations=auth)
    assert decision["pa_needed"] == expected
    assert (decision.get("authorization") == "UTN1") == (expected == "satisfied")
    if expected == "satisfied":
        assert decision["documentation"] == []


def test_authorization_for_another_code_does_not_satisfy(good_rules: engine.RuleSet) -> None:
    auth = [{"id": "UTN1", "code": "15822", "start": "2023-03-01", "end": "2023-06-28"}]
    assert decide(good_rules, place_of_service="22", authorizations=auth)["pa_needed"] == "auth-needed"


def test_unlisted_code_is_unknown_unless_the_payer_declares_its_list_complete(good_rules: engine.RuleSet) -> None:
    medicare = decide(good_rules, services=[{"code": "99213"}])  # its _payer.yaml declares no scope
    assert (medicare["pa_needed"], medicare["covered"]) == ("unknown", "unknown")
    assert medicare["reasons"][0].startswith("covreq does not know whether 99213 needs prior authorization")
    acme = good_rules.evaluate({"payer": "acme", "services": [{"code": "99213"}]})["decisions"][0]  # scope: complete
    assert (acme["pa_needed"], acme["covered"]) == ("no-auth", "covered")
    assert acme["reasons"] == ["Acme lists no prior-authorization requirement for this code."]


def test_plan_override_replaces_the_base_only_for_its_plan(good_rules: engine.RuleSet) -> None:
    base = {"payer": "acme", "date_of_service": "2024-02-01", "place_of_service": "22",
            "patient": {"birth_date": "1950-01-01"}, "services": [{"code": "70551"}]}
    advantage = good_rules.evaluate({**base, "plan": "advantage"})["decisions"][0]
    commercial = good_rules.evaluate({**base, "plan": "commercial"})["decisions"][0]
    no_plan = good_rules.evaluate(base)["decisions"][0]
    assert advantage["pa_needed"] == "no-auth" and advantage["policies"][0]["id"] == "acme-imaging-advantage"
    assert commercial["pa_needed"] == "auth-needed" and commercial["policies"][0]["id"] == "acme-imaging"
    assert no_plan["policies"][0]["id"] == "acme-imaging"


def test_version_in_force_on_the_date_of_service_decides(good_rules: engine.RuleSet) -> None:
    body = {"payer": "acme", "plan": "commercial", "place_of_service": "22", "services": [{"code": "70551"}]}
    v1 = good_rules.evaluate({**body, "date_of_service": "2023-12-31"})["decisions"][0]
    v2 = good_rules.evaluate({**body, "date_of_service": "2024-01-01"})["decisions"][0]
    assert v1["policies"][0]["version"] == "1" and v2["policies"][0]["version"] == "2"


def test_explain_traces_rules_with_locations(good_rules: engine.RuleSet) -> None:
    decision = decide(good_rules, place_of_service="22", explain=True)
    trace = decision["trace"]
    assert [t["result"] for t in trace] == ["false", "true"]
    assert trace[0]["location"].endswith("blepharoplasty.yaml:10:5")
    assert trace[0]["predicates"][0]["expr"] == 'place_of_service not in {"19", "22"}'
    assert "trace" not in decide(good_rules, place_of_service="22")


def test_response_names_digest_and_date_used(good_rules: engine.RuleSet) -> None:
    response = good_rules.evaluate({"payer": "medicare", "services": [{"code": "15823"}]})
    assert response["ruleset"] == good_rules.digest and len(response["as_of"]) == 10


def test_decisions_follow_request_order_and_see_the_other_codes(good_rules: engine.RuleSet) -> None:
    response = good_rules.evaluate({**BLEPH, "services": [{"code": "99213"}, {"code": "15823"}, {"code": "J0585"}]})
    assert [d["code"] for d in response["decisions"]] == ["99213", "15823", "J0585"]
    assert response["decisions"][2]["system"] == "HCPCS"


@pytest.mark.parametrize("body, location", [
    ({"services": [{"code": "15823"}]}, "payer"),
    ({"payer": "medicare"}, "services"),
    ({"payer": "medicare", "services": []}, "services"),
    ({"payer": "medicare", "services": [{"code": "ABC"}]}, "services[0].code"),
    ({"payer": "medicare", "services": [{"code": "15823", "system": "HCPCS"}]}, "services[0].code"),
    ({"payer": "medicare", "services": [{"code": "15823", "units": -1}]}, "services[0].units"),
    ({"payer": "medicare", "services": [{"code": "15823"}], "date_of_service": "2023-02-30"}, "date_of_service"),
    ({"payer": "medicare", "services": [{"code": "15823"}], "date_of_service": "9999-01-01"}, "date_of_service"),
    ({"payer": "medicare", "services": [{"code": "15823"}], "diagnoses": "H02.831"}, "diagnoses"),
    ({"payer": "medicare", "services": [{"code": "15823"}], "colour": "red"}, "colour"),
    ({"payer": "nobody", "services": [{"code": "15823"}]}, "payer"),
    ({"payer": "medicare", "services": [{"code": "15823"}], "authorizations": [{"id": "x"}]},
     "authorizations[0].start"),
    ([], ""),
])
def test_bad_requests_raise_located_request_errors(good_rules: engine.RuleSet, body: Any, location: str) -> None:
    with pytest.raises(RequestError) as info:
        good_rules.evaluate(body)
    assert info.value.location == location


# Supplying the facts a conditional answer needs always lands on one of the answers it listed.
pos_values = st.sampled_from(["11", "19", "21", "22", "23", "24"])


@settings(max_examples=150, deadline=None)
@given(code=st.sampled_from(["15823", "67900", "70551", "74177"]), payer_plan=st.sampled_from(
    [("medicare", None), ("acme", "commercial"), ("acme", "advantage")]),
    pos=pos_values, age=st.integers(min_value=0, max_value=100), give_pos=st.booleans(), give_age=st.booleans(),
    dos=st.sampled_from(["2022-01-06", "2023-05-01", "2024-02-01", "2024-07-01"]))
def test_supplying_missing_facts_resolves_conditional_into_a_listed_answer(
        good_rules: engine.RuleSet, code: str, payer_plan: tuple[str, str | None], pos: str, age: int,
        give_pos: bool, give_age: bool, dos: str) -> None:
    payer, plan = payer_plan
    birth = f"{int(dos[:4]) - age - 1}-01-01"
    full: dict[str, Any] = {"payer": payer, "date_of_service": dos, "place_of_service": pos,
                            "patient": {"birth_date": birth}, "services": [{"code": code}]}
    if plan:
        full["plan"] = plan
    partial = dict(full)
    if not give_pos:
        del partial["place_of_service"]
    if not give_age:
        del partial["patient"]
    first = good_rules.evaluate(partial)["decisions"][0]
    final = good_rules.evaluate(full)["decisions"][0]
    assert final["pa_needed"] != "conditional"
    if first["pa_needed"] == "conditional":
        assert set(first["info_needed"]) <= {"place_of_service", "patient.age"}
        assert final["pa_needed"] in first["possible"]
    else:
        assert final["pa_needed"] == first["pa_needed"]


def test_a_rule_without_a_reason_still_explains_the_answer(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(
        "id: p\ntitle: Sleep studies\npayer: acme\neffective: 2024-01-01\nsource: {url: 'https://example.org'}\n"
        "codes: ['95806']\nrules:\n  - id: home\n    when: place_of_service == \"12\"\n    pa_needed: auth-needed\n")
    rules = engine.load(tmp_path)
    body = {"payer": "acme", "date_of_service": "2024-05-01", "services": [{"code": "95806"}]}
    home = rules.evaluate({**body, "place_of_service": "12"})["decisions"][0]
    office = rules.evaluate({**body, "place_of_service": "11"})["decisions"][0]
    assert home["reasons"] == ["Sleep studies: rule 'home' answers auth-needed."]
    assert office["reasons"] == ["Sleep studies: the default answers no-auth."]


def test_ranges_too_long_to_expand_are_found_beside_exact_listings(tmp_path: Path) -> None:
    head = "title: T\npayer: acme\neffective: 2024-01-01\nsource: {url: 'https://example.org'}\n"
    (tmp_path / "wide.yaml").write_text("id: wide\n" + head + "codes: [10000-19999, 20000-29999]\n"
                                        "rules: [{when: true, pa_needed: auth-needed}]\n")
    (tmp_path / "exact.yaml").write_text("id: exact\n" + head + "codes: ['15000']\n"
                                         "rules: [{when: true, pa_needed: no-auth}]\n")
    rules = engine.load(tmp_path)

    def policies(code: str) -> list[str]:
        body = {"payer": "acme", "date_of_service": "2024-05-01", "services": [{"code": code}]}
        return [p["id"] for p in rules.evaluate(body)["decisions"][0]["policies"]]
    assert policies("15000") == ["exact", "wide"]
    assert policies("25000") == ["wide"]
    assert policies("30000") == []
