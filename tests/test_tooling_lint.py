"""``covreq lint``: one fixture tree per finding type, the bundled rules, severities and exit codes."""
from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from covreq.cli import main
from engine.authoring.lint import CHECKS, fails, lint_tree
from engine.loading.loader import read_tree

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
TOOLING = FIXTURES / "tooling"
TODAY = dt.date(2025, 6, 1)


def codes_and_places(name: str) -> list[tuple[str, str, str]]:
    findings = lint_tree(read_tree(TOOLING / name), TODAY)
    return [(f.problem.code, f"{Path(f.problem.path).name}:{f.problem.line}:{f.problem.column}", f.problem.message)
            for f in findings]


@pytest.mark.parametrize("name, expected", [
    ("conflict", [("W-conflict", "imaging-b.yaml:1:5", "both govern 70552-70553 from 2024-06-01 to open")]),
    ("shadowed", [("W-shadowed", "policy.yaml:11:5", "rule 'home-or-office' at line 8 is true whenever this one is"),
                  ("W-shadowed", "policy.yaml:17:5", "rule 'all' at line 14 is always true")]),
    ("constant", [("W-constant", "policy.yaml:9:11", "the condition is always false (the policy is in force from"),
                  ("W-constant", "policy.yaml:12:11", "`known(code)` is always true")]),
    ("code-format", [("E-unknown-value", "policy.yaml:14:27", '"0131" can never match type_of_bill'),
                     ("E-unknown-value", "policy.yaml:14:68", '"2" is not a CMS place-of-service code')]),
    ("unknown-plan", [("E-unknown-value", "policy.yaml:9:28", '"golt" is not a plan of payer \'acme\'')]),
    ("unused-doc", [("W-unused-doc", "policy.yaml:13:3", "documentation item 'glare-test' is never used")]),
    ("unused-value-set", [("W-unused-value-set", "policy.yaml:9:3", "value set 'diabetes' is never used")]),
    ("untitled-value-set", [("W-untitled-value-set", "policy.yaml:8:3",
                             "value set 'malignant_vcf' is read in a condition people see")]),
    ("source-url", [("W-source-url", "policy.yaml:5:1", "is a placeholder")]),
    ("expired", [("W-expired", "policy.yaml:5:1", "ended on 2023-12-31 and no later version follows it")]),
    ("duplicate-code", [("W-duplicate-code", "policy.yaml:6:22", "\"22513\" is already in 22510-22515")]),
    ("gap", [("W-gap", "policy.yaml:7:1", "for 64490-64495 no rule is always true and there is no default")]),
    ("pause", [("W-pause", "policy.yaml:6:6", "the pause from 2020-03-01 never applies: the policy is in force from"),
               ("W-pause", "policy.yaml:8:6", "the pause from 2022-05-01 lies inside the pause from 2022-01-01")]),
    ("shadowed-exemption", [("W-shadowed-exemption", "mri-silver.yaml:5:5",
                             "is true whenever the base's exemption 'children' (")]),
])
def test_each_fixture_has_exactly_its_own_findings(name: str, expected: list[tuple[str, str, str]]) -> None:
    found = codes_and_places(name)
    assert [(c, p) for c, p, _ in found] == [(c, p) for c, p, _ in expected], found
    for (_, _, message), (_, _, fragment) in zip(found, expected):
        assert fragment in message


def test_every_check_has_a_fixture_and_a_documented_severity() -> None:
    fixtures = {p.name for p in TOOLING.iterdir()}
    docs = (ROOT / "docs" / "authoring.md").read_text(encoding="utf-8")
    for code, info in CHECKS.items():
        assert code.removeprefix("W-") in fixtures
        assert info.severity in ("warning", "notice")
        assert f"| `{code}` | {info.severity} |" in docs


def test_bundled_rules_have_no_errors_or_warnings() -> None:
    findings = lint_tree(read_tree(ROOT / "rules"), TODAY)
    # the suspended osteogenesis-stimulator program carries an open pause, so nothing has expired
    assert findings == [], [str(f.problem) for f in findings]


def test_load_problems_are_errors_and_the_tree_is_still_linted() -> None:
    findings = lint_tree(read_tree(FIXTURES / "ten_mistakes"), TODAY)
    errors = [f for f in findings if f.severity == "error"]
    assert len(errors) == 11 and all(f.problem.code.startswith("E-") for f in errors)
    assert {f.problem.code for f in findings if f.severity != "error"} == {"W-source-url"}


def test_exit_codes_follow_fail_on(capsys: pytest.CaptureFixture[str]) -> None:
    gap = str(TOOLING / "gap")
    assert main(["lint", gap]) == 0  # a notice does not fail by default
    assert main(["lint", gap, "--fail-on", "notice"]) == 1
    assert main(["lint", str(TOOLING / "shadowed")]) == 1
    assert main(["lint", str(TOOLING / "shadowed"), "--fail-on", "error"]) == 0
    assert main(["lint", str(TOOLING / "expired"), "--today", "2023-06-01", "--fail-on", "notice"]) == 0
    capsys.readouterr()


def test_text_json_and_github_output(capsys: pytest.CaptureFixture[str]) -> None:
    shadowed = TOOLING / "shadowed"
    main(["lint", str(shadowed)])
    captured = capsys.readouterr()
    assert captured.out.splitlines()[0] == (
        f"{shadowed / 'policy.yaml'}:11:5: W-shadowed: rule 'office-adult' can never fire under hit policy first: "
        "rule 'home-or-office' at line 8 is true whenever this one is [warning]")
    assert "0 error(s), 2 warning(s), 0 notice(s) in 1 file(s)" in captured.err
    main(["lint", str(shadowed), "--format", "json"])
    report = json.loads(capsys.readouterr().out)
    assert [(f["code"], f["severity"], f["line"]) for f in report] == [("W-shadowed", "warning", 11),
                                                                       ("W-shadowed", "warning", 17)]
    main(["lint", str(TOOLING / "gap"), "--format", "github"])
    assert capsys.readouterr().out.startswith("::notice file=")
