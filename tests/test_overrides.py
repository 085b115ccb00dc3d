"""Plan overrides that add documentation or rules after their base's (issue 15, item 9)."""
from __future__ import annotations

from pathlib import Path

import pytest

import engine
from engine.loading.loader import read_tree

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
    (tmp_path / "_payer.yaml").write_text("payer: acme\nplans: {gold: Gold, silver: Silver}\n", encoding="utf-8")
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


def _read_then(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, change: str) -> list[tuple[str, str, str]]:
    """Problems of the tree when ``change`` happens to the base file once it has been read."""
    from engine.loading import files
    base = tmp_path / "mri.yaml"
    base.write_text(BASE, encoding="utf-8")
    (tmp_path / "mri-gold.yaml").write_text(GOLD, encoding="utf-8")
    first_read = files.read_bytes

    def read_and_change(path: Path) -> bytes:
        raw = first_read(path)
        if path == base and change == "edited":
            base.write_text(BASE.replace("Signed order", "Signed and dated order"), encoding="utf-8")
        elif path == base and change == "removed":
            base.unlink()
        return raw
    monkeypatch.setattr(files, "read_bytes", read_and_change)
    return [(Path(p.path).name, p.code, p.message) for p in read_tree(tmp_path).problems]


@pytest.mark.parametrize("change, message", [
    ("edited", "the file changed while the tree was being read; load the tree again"),
    ("removed", "No such file or directory"),
])
def test_a_base_changed_while_the_tree_is_read_is_reported_not_mixed_into_its_overrides(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, change: str, message: str) -> None:
    assert _read_then(tmp_path, monkeypatch, change) == [("mri.yaml", "E-io", message)]


def test_overrides_and_their_bases_merge_the_same_whatever_the_file_order(tmp_path: Path) -> None:
    """Overrides are merged base by base after the whole tree is read; bases are read again from disk."""
    silver = GOLD.replace("acme-mri-gold", "acme-mri-silver").replace("[gold]", "[silver]")
    names = {"a": ["0-gold.yaml", "1-mri.yaml", "2-silver.yaml"], "b": ["0-silver.yaml", "1-gold.yaml", "2-mri.yaml"]}
    loaded = {}
    for order, (gold, base, other) in names.items():
        (tmp_path / order).mkdir()
        for name, text in ((gold, GOLD), (base, BASE), (other, silver)):
            (tmp_path / order / name).write_text(text, encoding="utf-8")
        rules = engine.load(tmp_path / order)
        loaded[order] = sorted((p.id, p.plans, tuple(r.id for r in p.rules), tuple(p.documentation))
                               for p in rules.policy_versions())
    assert loaded["a"] == loaded["b"] and len(loaded["a"]) == 3
