"""The ``covreq test`` command: run the cases beside the policies, measure rule coverage, report.

PATH is a folder, a tests file or a policy file (then the tests file beside it runs). Coverage counts
the rules in the policy files under PATH (for a tests file, the policy file it is named after), so
``covreq test rules/medicare/opd`` measures the OPD policies only; the rule tree is found from PATH
(see :func:`engine.authoring.testcases.rule_tree_of`) unless ``--rules`` names it.

Exit codes: 0 every case passed (and coverage reached ``--min-coverage``); 1 a case failed, a tests
file is malformed, no case was found or coverage is below the minimum.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import TextIO

from engine.authoring.coverage import Coverage, Summary
from engine.errors import Problem
from engine.authoring.report import Check, Finding, write_findings
from engine.evaluation.ruleset import RuleSet
from engine.loading.files import TESTS_SUFFIX
from engine.authoring.testcases import CaseResult, policy_file_of, run_tests

EXIT_OK, EXIT_PROBLEMS = 0, 1


def _case_finding(result: CaseResult) -> Finding:
    problem = Problem(result.file, result.line, 1, "T-fail", f"{result.name}: " + "; ".join(result.diffs))
    return Finding(problem, "error", tuple(result.detail))


def _coverage_findings(summary: Summary, root: str, min_coverage: float | None) -> list[Finding]:
    below = min_coverage is not None and summary.percent < min_coverage
    found = [Finding(Problem(u.location.path, u.location.line, u.location.column, u.code, u.message),
                     "warning" if below else "notice") for u in summary.uncovered]
    if below:
        found.insert(0, Finding(Problem(root, 1, 1, "C-min-coverage",
                                        f"coverage {summary.percent:.1f}% is below the minimum {min_coverage:g}%")))
    return found


def _coverage_scope(path: Path) -> Path:
    """The policy files coverage is measured on: a folder; a policy file; for a tests file, the policy
    file it is named after, or its folder when there is none."""
    if path.is_dir() or not path.name.endswith(TESTS_SUFFIX):
        return path
    policy = policy_file_of(path)
    return policy if policy.is_file() else path.parent


def coverage_line(summary: Summary) -> str:
    """One line of coverage totals."""
    if not summary.rules:
        return "coverage: no rules under the tested path"
    return (f"coverage {summary.percent:.1f}%: {summary.rules_fired}/{summary.rules} rules fired, "
            f"{summary.branches_covered}/{summary.branches} branches")


def run(rules: RuleSet, path: str, fmt: str, out: TextIO, err: TextIO, min_coverage: float | None = None,
        show_uncovered: bool = False) -> int:
    """Run the cases under ``path`` against ``rules`` and write the report; returns the exit code."""
    scope = _coverage_scope(Path(path))
    coverage = Coverage(rules.policy_versions(), scope)
    results, problems = run_tests(rules, path, coverage)
    if not results and not problems:
        print(f"covreq test: no test cases found in {path}", file=err)
        return EXIT_PROBLEMS
    summary = coverage.summary()
    below = min_coverage is not None and summary.percent < min_coverage
    failures = [Finding(p) for p in problems] + [_case_finding(r) for r in results if not r.passed]
    uncovered = _coverage_findings(summary, str(path), min_coverage) if below or show_uncovered or fmt == "junit" else []
    passed = sum(r.passed for r in results)
    if fmt == "json":
        json.dump({"passed": passed, "failed": len(results) - passed, "failures": [f.as_dict() for f in failures],
                   "coverage": summary.as_dict(), "minimum": min_coverage}, out, indent=2)
        out.write("\n")
    elif fmt == "junit":
        checks = [Check(r.name, r.file, () if r.passed else (_case_finding(r),)) for r in results]
        checks += [Check(str(Path(p.path)), "tests-file", (Finding(p),)) for p in problems]
        if min_coverage is not None:
            checks.append(Check(f"coverage >= {min_coverage:g}%", "coverage", tuple(uncovered)))
        write_findings([], fmt, out, "covreq test", checks)
    else:
        write_findings(failures + uncovered, fmt, out)
    if fmt in ("text", "github"):
        print(f"{passed} passed, {len(results) - passed} failed", file=out if fmt == "text" else err)
        print(coverage_line(summary), file=out if fmt == "text" else err)
    return EXIT_PROBLEMS if failures or below else EXIT_OK
