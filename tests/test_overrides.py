"""Plan overrides that add documentation or rules after their base's (issue 15, item 9)."""
from __future__ import annotations

from pathlib import Path

import pytest

import engine
from engine.loader import read_tree

BASE = """\
id: acme-mri
title: MRI
payer: acme
effective: 2024-01-01
source: {url: "https://policies.acme.test/mri"}
codes: ["70551"]
rules:
  - id: children
    when: patient.age < 18
    pa_needed: no-auth
  - id: in-network
    when: provider.network == "in"
    pa_needed: auth-needed
    documentation: [order]
default: {pa_needed: auth-needed, documentation: [order]}
documentation:
  order: {text: "Signed order"}
"""

GOLD = """\
id: acme-mri-gold
extends: acme-mri
plans: [gold]
add_documentation: [prior-imaging, {id: second-opinion, when: patient.age >= 80}]
rules_after:
  - id: gold-fallback
    when: provider.network == "out"
    pa_needed: no-auth
documentation:
  prior-imaging: {text: "Reports of prior imaging"}
  second-opinion: {text: "A second opinion"}
"""


@pytest.fixture()
def rules(tmp_path: Path) -> engine.RuleSet:
    (tmp_path / "mri.yaml").write_text(BASE, encoding="utf-8")
    (tmp_path / "mri-gold.yaml").write_text(GOLD, encoding="utf-8")
    return engine.load(tmp_path)


def answer(rules: engine.RuleSet, plan: str, birth: str, network: str) -> tuple[str, list[str]]:
    decision = rules.evaluate({"payer": "acme", "plan": plan, "date_of_service": "2024-03-01",
                               "patient": {"birth_date": birth}, "provider": {"network": network},
                               "services": [{"code": "70551"}]})["decisions"][0]
    return decision["pa_needed"], sorted(d["id"] for d in decision["documentation"])


def test_add_documentation_joins_every_answer_that_needs_pa_and_keeps_the_base_exemptions(
        rules: engine.RuleSet) -> None:
    """Regression (issue 15, item 9): an override adding one documentation item had to copy the base's
    exemptions."""
    assert answer(rules, "gold", "2015-01-01", "in") == ("no-auth", [])  # the base's exemption holds
    assert answer(rules, "gold", "1970-01-01", "in") == ("auth-needed", ["order", "prior-imaging"])
    assert answer(rules, "gold", "1940-01-01", "in") == ("auth-needed", ["order", "prior-imaging", "second-opinion"])
    assert answer(rules, "silver", "1970-01-01", "in") == ("auth-needed", ["order"])  # other plans: the base


def test_rules_after_are_tried_after_the_base_rules_and_before_the_default(rules: engine.RuleSet) -> None:
    assert answer(rules, "gold", "1970-01-01", "out") == ("no-auth", [])  # no base rule held: gold-fallback
    assert answer(rules, "silver", "1970-01-01", "out") == ("auth-needed", ["order"])  # the base's default


@pytest.mark.parametrize("key", ["rules_after: [{when: true}]", "add_documentation: [order]"])
def test_override_keys_need_extends(tmp_path: Path, key: str) -> None:
    (tmp_path / "mri.yaml").write_text(BASE + key + "\n", encoding="utf-8")
    problems = read_tree(tmp_path).problems
    assert [(p.code, p.message) for p in problems] == [
        ("E-schema", f"(top level): 'extends' is a dependency of '{key.split(':')[0]}'")]


def test_added_documentation_must_be_in_the_catalogue(tmp_path: Path) -> None:
    (tmp_path / "mri.yaml").write_text(BASE, encoding="utf-8")
    (tmp_path / "mri-gold.yaml").write_text(GOLD.replace("[prior-imaging,", "[prior-imagin,"), encoding="utf-8")
    problems = read_tree(tmp_path).problems
    assert [(Path(p.path).name, p.line, p.column, p.code) for p in problems] == [
        ("mri-gold.yaml", 4, 21, "E-unknown-doc")]
