"""``covreq fmt``: key order, sorted and merged code lists, comments kept, ``--check``."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

import engine
from covreq.cli import main
from engine.authoring.fmt import format_text
from engine.policy import Policy

ROOT = Path(__file__).resolve().parent.parent
FMT = Path(__file__).resolve().parent / "fixtures" / "tooling" / "fmt"
BUNDLED = [p for p in sorted((ROOT / "rules").rglob("*.yaml"))
           if not p.name.endswith(".tests.yaml") and p.name != "_payer.yaml"]


def comments(text: str) -> list[str]:
    return [m.group(0).strip() for m in re.finditer(r"#[^\n]*", text)]


def test_messy_file_gets_the_normal_form_and_keeps_every_comment() -> None:
    messy = (FMT / "messy.yaml").read_text()
    result = format_text(messy)
    assert result.after == (FMT / "formatted.yaml").read_text()
    assert sorted(comments(result.after)) == sorted(comments(messy))
    assert 'codes: ["29870", "29871", 29872-29874, "29877", "29880", "29881", G0289]' in result.after
    assert result.after.index("\nid:") < result.after.index("\ntitle:") < result.after.index("\nrules:")
    assert "  - id: children\n    when: patient.age < 18\n    pa_needed: no-auth\n" in result.after


def test_normal_form_is_stable() -> None:
    formatted = (FMT / "formatted.yaml").read_text()
    assert not format_text(formatted).changed


def test_check_mode_and_rewrite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fmt", "--check", str(FMT / "formatted.yaml")]) == 0
    assert main(["fmt", "--check", str(FMT / "messy.yaml")]) == 1
    assert "messy.yaml: not formatted" in capsys.readouterr().out
    copy = tmp_path / "messy.yaml"
    shutil.copy(FMT / "messy.yaml", copy)
    assert main(["fmt", str(tmp_path)]) == 0
    assert copy.read_text() == (FMT / "formatted.yaml").read_text()
    assert main(["fmt", "--check", str(tmp_path)]) == 0


def test_a_comment_inside_a_code_list_keeps_the_list_as_written(capsys: pytest.CaptureFixture[str]) -> None:
    text = ("id: x\ntitle: X\npayer: acme\neffective: 2024-01-01\nsource: {url: 'https://p.test/x'}\n"
            "codes:\n  - \"29877\"  # added 2024-03\n  - \"29870\"\n")
    result = format_text(text, "x.yaml")
    assert not result.changed and result.notes == ("x.yaml: codes kept in their order because a comment is "
                                                   "attached to one of them",)


def test_unparsable_file_exits_two(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Regression (issue 15, item 10): fmt printed ruamel's multi-line text instead of file:line:column."""
    (tmp_path / "broken.yaml").write_text("id: x\ncodes: [\"1\", \"2\"\ntitle: y\n")
    assert main(["fmt", "--check", str(tmp_path)]) == 2
    assert capsys.readouterr().err == (f"{tmp_path / 'broken.yaml'}:3:1: E-yaml: a [ ... ] list is not closed, or misses "
                                       "a comma; close the list that starts at line 2, column 8 with ']' and separate "
                                       "its items with ', ' (cannot format)\n")


def codes(policy: Policy) -> dict[tuple[object, object], frozenset[str]]:
    """The governed codes by their dates (one list item or many: the same codes)."""
    by_dates: dict[tuple[object, object], frozenset[str]] = {}
    for group in policy.code_groups:
        found = group.codes.exact | {c for r in group.codes.ranges for c in r.codes()}
        by_dates[(group.effective, group.end)] = by_dates.get((group.effective, group.end), frozenset()) | found
    return by_dates


def shape(policy: Policy) -> tuple[object, ...]:
    """What a policy means, without its source locations or compiled closures."""
    return (policy.id, policy.version, policy.effective, policy.end, policy.plans, policy.extends, policy.url,
            codes(policy),
            tuple((r.id, r.when, r.outcome.pa_needed, r.outcome.covered, r.outcome.reason,
                   tuple((d.id, d.when) for d in r.outcome.documentation)) for r in policy.rules),
            dict(policy.documentation), dict(policy.value_sets))


def test_bundled_policies_keep_their_meaning_and_comments(tmp_path: Path) -> None:
    copy = tmp_path / "rules"
    shutil.copytree(ROOT / "rules", copy)
    for path in BUNDLED:
        original = path.read_text()
        after = format_text(original, str(path)).after
        assert sorted(comments(after)) == sorted(comments(original)), path
        assert not format_text(after).changed, path
        (copy / path.relative_to(ROOT / "rules")).write_text(after)
    before, formatted = engine.load(ROOT / "rules"), engine.load(copy)
    key = lambda p: (p.id, p.effective, p.extends or "")  # noqa: E731
    assert [shape(p) for p in sorted(before.policy_versions(), key=key)] == \
           [shape(p) for p in sorted(formatted.policy_versions(), key=key)]


def test_listed_codes_are_sorted_and_deduplicated_but_never_merged_into_ranges() -> None:
    """Regression (issue 15, item 5): fmt rewrote [72148, 72149] as 72148-72149, and authors grep for codes."""
    text = ("id: x\ntitle: X\npayer: acme\neffective: 2024-01-01\nsource: {url: 'https://p.test/x'}\n"
            "codes: [\"72149\", \"72148\", E0748, E0747, 15820-15823, \"72148\"]\n")
    assert "codes: [15820-15823, \"72148\", \"72149\", E0747, E0748]\n" in format_text(text).after


def test_the_bundled_rules_and_the_guide_examples_are_in_normal_form(capsys: pytest.CaptureFixture[str]) -> None:
    """Regression (issue 15, item 5): four bundled files failed `covreq fmt --check rules/`, so the shipped
    pre-commit hook failed on the project's own tree."""
    assert main(["fmt", "--check", str(ROOT / "rules"), str(ROOT / "docs/examples/walkthrough")]) == 0, \
        capsys.readouterr().out


def test_a_code_inside_a_range_of_the_list_is_dropped_comments_kept() -> None:
    """Regression (issue 27, item 2): fmt kept 22513 beside 22510-22515."""
    text = ("id: x  # the id\ntitle: X\npayer: acme\neffective: 2024-01-01\nsource: {url: 'https://p.test/x'}\n"
            "codes: [\"22515\", 22510-22515, \"22513\"]  # spine\n")
    result = format_text(text, "x.yaml")
    assert 'codes: [22510-22515]  # spine\n' in result.after
    assert result.after.startswith("id: x  # the id\n")


def test_check_diff_shows_the_unified_diff(capsys: pytest.CaptureFixture[str]) -> None:
    """Regression (issue 27, item 4): --check said "not formatted" without showing what."""
    assert main(["fmt", "--check", "--diff", str(FMT / "messy.yaml")]) == 1
    out = capsys.readouterr().out
    assert f"--- {FMT / 'messy.yaml'}\n+++ {FMT / 'messy.yaml'} (formatted)\n" in out
    assert "\n@@ " in out and "\n+codes: " in out
