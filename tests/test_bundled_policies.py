"""The bundled policies in rules/ validate and pass every YAML test case kept beside them."""
from __future__ import annotations

from pathlib import Path

import pytest

import engine
from engine.loading.loader import read_tree
from engine.authoring.testcases import iter_test_files, run_file

RULES = Path(__file__).resolve().parent.parent / "rules"


@pytest.fixture(scope="module")
def bundled() -> engine.RuleSet:
    return engine.load(RULES)


def test_bundled_rules_validate_without_problems() -> None:
    tree = read_tree(RULES)
    assert tree.problems == []
    assert {p.payer for p in tree.policies} >= {"medicare"}


def test_every_bundled_policy_has_a_tests_file_beside_it() -> None:
    policies = {p for p in RULES.rglob("*.yaml") if not p.name.startswith("_") and not p.name.endswith(".tests.yaml")}
    untested = {p for p in policies if not p.with_name(p.stem + ".tests.yaml").exists()}
    # A plan override (a policy that extends another) is tested in its base policy's tests file.
    assert {p for p in untested if "extends:" not in p.read_text(encoding="utf-8")} == set()


def test_every_bundled_policy_cites_a_source(bundled: engine.RuleSet) -> None:
    assert all(p.url.startswith("https://") for p in bundled.policy_versions())


@pytest.mark.parametrize("tests_file", sorted(iter_test_files(RULES)), ids=lambda p: p.name)
def test_bundled_cases_pass(bundled: engine.RuleSet, tests_file: Path) -> None:
    results, problems = run_file(bundled, tests_file)
    assert problems == []
    assert results, f"{tests_file} has no cases"
    failures = [f"{r.file}:{r.line}: {r.name}: {'; '.join(r.diffs)}" for r in results if not r.passed]
    assert failures == []
