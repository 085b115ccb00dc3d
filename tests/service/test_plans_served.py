"""The service's side of issue 22 items 2 and 3: an unknown plan is a 422 in v1 and never answered as
another plan in CRD or DTR; a code no rule lists is never asserted covered / no-auth in CRD."""
from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from tests.service.crd_calls import (assert_ok, assert_outcome, by_code, order_sign, post, repetitions,
                                     service_request, value)
from tests.service.dtr.dtr_helpers import coverage as medicare, package_request, service_request as order
from tests.service.test_bundled_payers import coverage

REPO = Path(__file__).resolve().parents[2]
RULES, PAYERS = REPO / "rules", REPO / "service" / "payers.yaml"
FLORIDA_BLUE_PLANS = {"commercial-aso", "commercial-hmo", "commercial-ppo"}
#: the bundled mapping's identifier of each payer named here (it matches identifiers only)
PAYER_IDS = {"Cigna": "cigna", "Florida Blue": "florida-blue", "UnitedHealthcare": "unitedhealthcare",
             "Medicare": "medicare"}


@pytest.fixture()
def bundled(make_client):
    return make_client(RULES, payers=PAYERS)


def sign(client, crd, payer: str, plan: str, code: str, **extra) -> dict[str, list]:
    """The coverage-information of one ServiceRequest for ``code`` under a Coverage of ``payer`` and ``plan``."""
    order = service_request("o1", code, pos="11")
    order["occurrenceDateTime"] = "2024-06-03"
    body = assert_ok(post(client, order_sign(order, prefetch={"coverage": coverage(payer, plan, PAYER_IDS[payer])}, **extra)), crd)
    return by_code(repetitions(body, "ServiceRequest/o1", crd), crd)[code]


def test_v1_refuses_an_unknown_plan_like_an_unknown_payer(bundled) -> None:
    response = bundled.post("/v1/requirements", json={"payer": "florida-blue", "plan": "commercial-hmo-typo",
                                                      "services": [{"code": "99213"}]})
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["location"] == "plan"
    assert "did you mean 'commercial-hmo'?" in error["message"]
    assert all(plan in error["message"] for plan in FLORIDA_BLUE_PLANS)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40)
       .filter(lambda p: p.strip() and p.strip() not in FLORIDA_BLUE_PLANS))
def test_v1_refuses_any_plan_the_payer_does_not_list(bundled, plan: str) -> None:
    response = bundled.post("/v1/requirements", json={"payer": "florida-blue", "plan": plan,
                                                      "services": [{"code": "95810"}]})
    assert response.status_code == 422 and response.json()["error"]["location"] == "plan"


def test_crd_never_asserts_covered_or_no_auth_for_a_code_no_rule_lists(bundled, crd) -> None:
    subs = sign(bundled, crd, "Cigna", "Commercial", "99213")
    assert value(subs, "covered") == ["indeterminate"] and value(subs, "pa-needed") == ["indeterminate"]
    assert "info-needed" not in subs  # nothing the EHR could send decides it
    assert any("covreq does not know whether this code needs Cigna prior authorization" in r["text"]
               for r in value(subs, "reason"))


def test_a_code_no_rule_lists_gets_a_card_telling_the_front_desk_to_ask_the_payer(bundled, crd) -> None:
    """Regression: the answer was only in the systemAction; CDS clients show cards, so a front desk
    saw nothing and could read the silence as "no authorization needed"."""
    order = service_request("o1", "99213", pos="11")
    order["occurrenceDateTime"] = "2024-06-03"
    body = assert_ok(post(bundled, order_sign(order, prefetch={"coverage": coverage("Cigna", "Commercial", "cigna")})),
                     crd)
    (card,) = body["cards"]
    assert card["summary"].startswith("Cigna: ask Cigna whether")
    assert "**Not known to covreq** for CPT 99213" in card["detail"]
    assert "covreq does not know whether this code needs Cigna prior authorization" in card["detail"]


def test_crd_2_0_clients_get_a_conditional_with_its_reason(bundled, crd) -> None:
    subs = sign(bundled, crd, "Cigna", "Commercial", "99213",
                extension={"davinci-crd.requestedVersion": "2.0"})
    assert value(subs, "covered") == ["conditional"] and value(subs, "info-needed") == ["OTH"]


def test_crd_answers_an_unmapped_plan_class_conditional_on_the_plan(bundled, crd) -> None:
    subs = sign(bundled, crd, "Florida Blue", "Platinum Select", "95810")
    assert value(subs, "covered") == ["conditional"] and value(subs, "pa-needed") == ["conditional"]
    assert value(subs, "info-needed") == ["OTH"]
    text = " ".join(r["text"] for r in value(subs, "reason"))
    assert "'Platinum Select'" in text and "commercial-hmo" in text and "depends on" in text


def test_crd_card_asks_for_the_plan(bundled, crd) -> None:
    order = service_request("o1", "95810", pos="11")
    body = assert_ok(post(bundled, order_sign(order, prefetch={"coverage": coverage("Florida Blue", "Gold 1", "florida-blue")})), crd)
    (card,) = body["cards"]
    assert "plan needed to decide" in card["summary"]


def test_crd_answers_a_plan_the_mapping_sends_to_an_unknown_plan_id_conditional(make_client, crd,
                                                                                  tmp_path: Path) -> None:
    mapping = tmp_path / "payers.yaml"
    mapping.write_text("match_by_name: true\npayers:\n  - payer: florida-blue\n    names: [Florida Blue]\n"
                       "    plans: {BlueCare HMO: commercial-hmo-typo}\n", encoding="utf-8")
    subs = sign(make_client(RULES, payers=mapping), crd, "Florida Blue", "BlueCare HMO", "95810")
    assert value(subs, "pa-needed") == ["conditional"]
    assert any("'commercial-hmo-typo', which is not a plan of 'florida-blue'" in r["text"]
               for r in value(subs, "reason"))


def test_a_mapped_plan_is_still_answered_by_its_rules(bundled, crd) -> None:
    assert value(sign(bundled, crd, "Florida Blue", "BlueCare HMO", "95810"), "pa-needed") == ["auth-needed"]
    assert value(sign(bundled, crd, "Florida Blue", "ASO", "95810"), "pa-needed") == ["no-auth"]


def test_dtr_package_refuses_an_unmapped_plan(make_client) -> None:
    client = make_client(RULES, payers=REPO / "tests" / "fixtures" / "dtr" / "payers.yaml")
    response = client.post("/fhir/Questionnaire/$questionnaire-package",
                           json=package_request(order(pos="22"), cov=medicare("Medicare Part C")))
    assert "'Medicare Part C'" in assert_outcome(response, 422, "Coverage.class")["diagnostics"]


def test_dtr_package_says_it_does_not_know_a_code_no_rule_lists(make_client) -> None:
    client = make_client(RULES, payers=REPO / "tests" / "fixtures" / "dtr" / "payers.yaml")
    response = client.post("/fhir/Questionnaire/$questionnaire-package",
                           json=package_request(order(code="99213", pos="22"), cov=medicare()))
    assert response.status_code == 200
    (outcome,) = [p["resource"] for p in response.json()["parameter"] if p["name"] == "outcome"]
    (issue,) = outcome["issue"]
    assert issue["severity"] == "warning" and "covreq does not know" in issue["diagnostics"]


def test_plan_problem_names_the_plan_and_leaves_payers_without_plans_alone() -> None:
    from service.crd.coverage import CoverageContext
    from service.crd.payers import CoveragePayer
    from service.crd.requests import plan_problem
    unmapped = CoverageContext("Coverage/c", CoveragePayer("Acme", "acme", None, plan_class="Platinum"))
    assert plan_problem(unmapped, frozenset()) is None  # nothing to tell apart: asked without a plan
    assert "'Platinum'" in (plan_problem(unmapped, {"gold"}) or "")
    mapped = CoverageContext("Coverage/c", CoveragePayer("Acme", "acme", "gold", plan_class="Gold"))
    assert plan_problem(mapped, {"gold"}) is None
    assert plan_problem(CoverageContext("Coverage/c", CoveragePayer("Acme", "acme")), {"gold"}) is None
