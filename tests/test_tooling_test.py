"""``covreq test``: failures located with a diff, rule and branch coverage, ``--min-coverage``."""
from __future__ import annotations

import json
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest

import engine
from covreq.cli import main
from engine.authoring.coverage import Coverage
from engine.authoring.testcases import rule_tree_of, run_tests

ROOT = Path(__file__).resolve().parent.parent
TOOLING = Path(__file__).resolve().parent / "fixtures" / "tooling"
COVERAGE, FAILING = TOOLING / "coverage", TOOLING / "failing-case"


def test_failure_names_the_case_file_and_line_and_shows_a_unified_diff(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["test", str(FAILING)]) == 1
    out = capsys.readouterr().out
    tests = FAILING / "policy.tests.yaml"
    assert f"{tests}:5:1: T-fail: expects the wrong answer on purpose: line 1 pa_needed:" in out
    assert "    --- expected (decision 1)\n    +++ actual\n" in out
    assert '    -pa_needed: "no-auth"\n    +pa_needed: "auth-needed"\n     covered: "covered"\n' in out
    assert '    -policies: ["acme-mri", "acme-other"]\n    +policies: ["acme-mri"]\n' in out
    assert "1 passed, 1 failed" in out


def test_coverage_counts_fired_rules_predicate_outcomes_and_deciding_operands() -> None:
    rules = engine.load(COVERAGE)
    coverage = Coverage(rules.policy_versions())
    results, problems = run_tests(rules, COVERAGE, coverage)
    assert problems == [] and all(r.passed for r in results)
    summary = coverage.summary()
    # rules: emergency and outpatient fired, children never; branches: 2 predicates x true/false and
    # 2 deciding operands per rule with a condition (the constant `true` has none)
    assert (summary.rules, summary.rules_fired) == (3, 2)
    assert (summary.branches, summary.branches_covered) == (12, 6)
    assert round(summary.percent, 1) == 53.3
    messages = {(str(u.location), u.message) for u in summary.uncovered}
    policy = str(COVERAGE / "policy.yaml")
    assert (f"{policy}:11:5", "rule 'children' never fired") in messages
    assert (f"{policy}:9:39", "rule 'emergency': `modifiers contains \"ER\"` never true") in messages
    assert (f"{policy}:12:32", "rule 'children': `known(patient.birth_date)` was never the operand that made its "
                               "`and` false") in messages
    # exercised: the emergency rule's first operand decided (POS 23) and was false once (POS 22)
    assert not any("place_of_service == \"23\"" in m for _, m in messages)


def test_coverage_does_not_change_answers_or_the_normal_path() -> None:
    rules = engine.load(COVERAGE)
    request = {"payer": "acme", "date_of_service": "2024-03-01", "services": [{"code": "70551"}]}
    assert "trace" not in rules.evaluate(request)["decisions"][0]  # no explain: no tracing cost
    results_cov, _ = run_tests(rules, COVERAGE, Coverage(rules.policy_versions()))
    results_plain, _ = run_tests(rules, COVERAGE)
    assert [r.diffs for r in results_cov] == [r.diffs for r in results_plain]


def test_min_coverage_fails_below_and_lists_uncovered_items(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["test", str(COVERAGE), "--min-coverage", "90"]) == 1
    out = capsys.readouterr().out
    assert f"{COVERAGE}:1:1: C-min-coverage: coverage 53.3% is below the minimum 90%" in out
    assert f"{COVERAGE / 'policy.yaml'}:11:5: C-rule: rule 'children' never fired [warning]" in out
    assert main(["test", str(COVERAGE), "--min-coverage", "50"]) == 0
    out = capsys.readouterr().out
    assert "C-rule" not in out and "coverage 53.3%: 2/3 rules fired, 6/12 branches" in out


def test_json_and_junit_reports(capsys: pytest.CaptureFixture[str]) -> None:
    main(["test", str(FAILING), "--format", "json"])
    report = json.loads(capsys.readouterr().out)
    assert (report["passed"], report["failed"]) == (1, 1)
    assert report["failures"][0]["code"] == "T-fail" and report["failures"][0]["line"] == 5
    assert report["failures"][0]["detail"][0] == "--- expected (decision 1)"
    assert report["coverage"]["rules"] == 3
    main(["test", str(COVERAGE), "--format", "junit", "--min-coverage", "90"])
    suite = ET.fromstring(capsys.readouterr().out).find("testsuite")
    assert suite is not None and suite.get("tests") == "3" and suite.get("failures") == "1"
    failing = [c.get("name") for c in suite.iter("testcase") if c.find("failure") is not None]
    assert failing == ["coverage >= 90%"]


def test_bundled_rules_pass_with_full_rule_and_branch_coverage(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["test", str(ROOT / "rules"), "--min-coverage", "100"]) == 0
    out = capsys.readouterr().out
    assert " 0 failed" in out and "coverage 100.0%" in out


def test_github_annotations_for_failures(capsys: pytest.CaptureFixture[str]) -> None:
    main(["test", str(FAILING), "--format", "github"])
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith("::error file=") and ",line=5,col=1,title=T-fail::" in first
    assert "%0A--- expected (decision 1)%0A" in first


def test_a_misspelt_key_in_a_tests_file_is_a_located_error_with_a_suggestion(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Regression (issue 15, item 1): `expects:` for `expect:` made a case pass without checking."""
    tests = tmp_path / "policy.tests.yaml"
    text = (FAILING / "policy.tests.yaml").read_text(encoding="utf-8")
    text = text.replace("expect:", "expects:", 1).replace("{pa_needed: no-auth", "{pa_neded: no-auth")
    tests.write_text(text, encoding="utf-8")
    (tmp_path / "policy.yaml").write_text((FAILING / "policy.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    assert main(["test", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert f"{tests}:2:5: E-schema: cases.0: needs 'expect' or 'error'" in out
    assert f"{tests}:4:5: E-schema: unknown key 'expects'; did you mean 'expect'?" in out
    assert f"{tests}:7:15: E-schema: unknown key 'pa_neded'; did you mean 'pa_needed'?" in out
    assert "0 passed, 0 failed" in out


def test_schema_tests_publishes_the_json_schema_of_tests_files(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema", "tests"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["$id"].endswith("/tests.schema.json") and schema["required"] == ["cases"]
    expectation = schema["$defs"]["expectation"]
    assert expectation["additionalProperties"] is False and "pa_needed" in expectation["properties"]


def test_one_tests_file_or_one_policy_is_tested_against_the_tree_it_belongs_to(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Regression (issue 15, item 2): `covreq test x.tests.yaml` read the tests file as a policy."""
    monkeypatch.chdir(ROOT)
    for path in ("rules/medicare/opd/blepharoplasty.tests.yaml", "rules/medicare/opd/blepharoplasty.yaml"):
        assert main(["test", path]) == 0
        captured = capsys.readouterr()
        assert "covreq test: testing against the rule tree rules (--rules chooses another)" in captured.err
        assert " 0 failed" in captured.out
        # coverage is measured on the policy the tests file is named after, which they cover fully
        assert "coverage 100.0%" in captured.out and "rules fired" in captured.out
    assert main(["test", "rules/medicare/dmepos"]) == 0
    assert "rule tree rules " in capsys.readouterr().err


def test_rule_tree_of_a_tree_without_payer_files_is_the_given_folder(tmp_path: Path) -> None:
    (tmp_path / ".git").mkdir()
    (tmp_path / "acme").mkdir()
    assert rule_tree_of(tmp_path / "acme") == tmp_path / "acme"
    (tmp_path / "acme" / "_payer.yaml").write_text("payer: acme\n", encoding="utf-8")
    assert rule_tree_of(tmp_path / "acme" / "x.tests.yaml") == tmp_path


def test_rule_tree_of_never_takes_a_sibling_tree_for_its_own(tmp_path: Path) -> None:
    """Regression: a tests file outside any payer folder climbed to a parent folder and took a
    sibling folder's payer tree (another project, another test's temporary folder) for its own."""
    (tmp_path / "acme").mkdir()
    (tmp_path / "acme" / "_payer.yaml").write_text("payer: acme\n", encoding="utf-8")
    (tmp_path / "mine").mkdir()
    assert rule_tree_of(tmp_path / "mine" / "policy.tests.yaml") == tmp_path / "mine"
    assert rule_tree_of(tmp_path) == tmp_path


def test_an_empty_folder_says_no_cases_were_found_without_a_coverage_figure(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Regression (issue 15, item 10): an empty folder printed "coverage 100.0%: 0/0"."""
    assert main(["test", str(tmp_path)]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.endswith(f"covreq test: no test cases found in {tmp_path}\n")


def test_tests_without_rules_in_scope_report_no_coverage_percentage(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["test", str(FAILING / "policy.tests.yaml"), "--rules", str(COVERAGE)]) == 1
    assert "coverage: no rules under the tested path" in capsys.readouterr().out


def test_schema_problems_and_refused_requests_are_reported_at_once_with_one_date_wording(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Regression (issue 27, item 5): request errors showed only once the schema errors were fixed,
    and `test` worded an impossible date otherwise than `validate`."""
    tests = tmp_path / "policy.tests.yaml"
    text = (FAILING / "policy.tests.yaml").read_text(encoding="utf-8").replace("2024-03-01", "2024-02-30")
    tests.write_text(text.replace("expect:", "expects:", 1), encoding="utf-8")
    policy = (FAILING / "policy.yaml").read_text(encoding="utf-8")
    (tmp_path / "policy.yaml").write_text(policy, encoding="utf-8")
    assert main(["test", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert f"{tests}:4:5: E-schema: unknown key 'expects'; did you mean 'expect'?" in out
    assert f"{tests}:2:1: T-fail: adult outpatient: request refused: date_of_service: " in out
    assert f"{tests}:5:1: T-fail: expects the wrong answer on purpose: request refused: date_of_service: " \
           f"'2024-02-30' is not a real calendar date" in out
    (tmp_path / "policy.yaml").write_text(policy.replace("effective: 2024-01-01", "effective: 2024-02-30"))
    assert main(["validate", str(tmp_path / "policy.yaml")]) == 1
    assert "E-date: '2024-02-30' is not a real calendar date" in capsys.readouterr().out
