"""``authorization.automatic_affirmation``: validated where it is written, off by default, off in every
bundled policy (their sources name a reviewer's affirmation: docs/policies.md)."""
from __future__ import annotations

from pathlib import Path

import pytest

import engine
from engine.loading.loader import read_tree

REPO = Path(__file__).resolve().parents[1]
POLICY = """\
id: p
title: T
payer: acme
effective: 2024-01-01
source: {url: "https://example.org"}
codes: ["99213"]
rules:
  - {when: true, pa_needed: auth-needed}
"""


def _tree(tmp_path: Path, authorization: str) -> Path:
    (tmp_path / "p.yaml").write_text(POLICY + authorization, encoding="utf-8")
    return tmp_path


def test_a_policy_allows_automatic_affirmation_only_when_it_says_so(tmp_path: Path) -> None:
    on = engine.load(_tree(tmp_path, "authorization:\n  valid_days: 120\n  automatic_affirmation: true\n"))
    assert [p.auto_affirm for p in on.policy_versions()] == [True]
    off = engine.load(_tree(tmp_path, "authorization:\n  valid_days: 120\n"))
    assert [p.auto_affirm for p in off.policy_versions()] == [False]


@pytest.mark.parametrize(("authorization", "where", "code", "words"), [
    ("authorization:\n  automatic_affirmation: true\n", (10, 26), "E-affirmation", "needs valid_days or valid_months"),
    ("authorization:\n  valid_days: 30\n  valid_months: 1\n", (10, 3), "E-schema", "give valid_days or valid_months, not both"),
    ("authorization:\n  valid_days: 30\n  automatic_affirmation: yes please\n", (11, 26), "E-schema", "is not of type 'boolean'"),
])
def test_a_wrong_authorization_block_is_a_located_problem(tmp_path: Path, authorization: str, where: tuple[int, int],
                                                          code: str, words: str) -> None:
    (problem,) = read_tree(_tree(tmp_path, authorization)).problems
    assert ((problem.line, problem.column), problem.code) == (where, code)
    assert words in problem.message


def test_no_bundled_policy_affirms_automatically() -> None:
    assert not [p.id for p in engine.load(REPO / "rules").policy_versions() if p.auto_affirm]
