"""Run the YAML test cases kept beside policies (``*.tests.yaml``) against a rule set."""
from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from .coverage import Coverage
from .errors import Problem, RequestError
from .loader import TESTS_SUFFIX
from .ruleset import RuleSet
from .yamlsource import YamlError, load_yaml

_SET_KEYS = {"documentation": "id", "policies": "id", "info_needed": None, "possible": None}
_EXACT_KEYS = ("pa_needed", "covered", "authorization")
EXPECT_KEYS = frozenset(_SET_KEYS) | frozenset(_EXACT_KEYS)


@dataclass
class CaseResult:
    """The outcome of one test case; ``diffs`` is empty when it passed."""

    file: str
    line: int
    name: str
    diffs: list[str] = field(default_factory=list)
    #: a unified diff of expected versus actual values, one block per decision that differs
    detail: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """True when every expectation held."""
        return not self.diffs


def iter_test_files(root: str | Path) -> Iterator[Path]:
    """Every ``*.tests.yaml`` file under ``root`` (or ``root`` itself), sorted."""
    root = Path(root)
    if root.is_file():
        if root.name.endswith(TESTS_SUFFIX):
            yield root
        return
    yield from sorted(p for p in root.rglob(f"*{TESTS_SUFFIX}") if p.is_file())


def _compare(index: int, expected: dict[str, Any], actual: dict[str, Any]) -> list[str]:
    diffs = []
    for key, want in expected.items():
        if key in _EXACT_KEYS:
            got = actual.get(key)
            if got != want:
                diffs.append(f"line {index + 1} {key}: expected {want!r}, got {got!r}")
        elif key in _SET_KEYS:
            want_set = set(_comparable(key, want, False))
            got_set = set(_comparable(key, actual.get(key), True))
            if got_set != want_set:
                missing, extra = sorted(want_set - got_set), sorted(got_set - want_set)
                diffs.append(f"line {index + 1} {key}: expected {sorted(want_set)}, got {sorted(got_set)}"
                             + (f" (missing {missing})" if missing else "") + (f" (unexpected {extra})" if extra else ""))
        else:
            diffs.append(f"line {index + 1}: unknown expectation '{key}'; use one of {', '.join(sorted(EXPECT_KEYS))}")
    return diffs


def _comparable(key: str, value: Any, from_response: bool) -> Any:
    if key in _SET_KEYS:
        field_name = _SET_KEYS[key] if from_response else None
        return sorted({item[field_name] if field_name else item for item in value or []}, key=str)
    return value


def _unified(index: int, expected: dict[str, Any], actual: dict[str, Any]) -> list[str]:
    """A unified diff of the expected keys of one decision against the same keys of the answer."""
    keys = [k for k in expected if k in EXPECT_KEYS]
    want = [f"{k}: {json.dumps(_comparable(k, expected[k], False), default=str)}" for k in keys]
    got = [f"{k}: {json.dumps(_comparable(k, actual.get(k), True), default=str)}" for k in keys]
    if want == got:
        return []
    return list(difflib.unified_diff(want, got, f"expected (decision {index + 1})", "actual", n=len(keys),
                                     lineterm=""))


def run_case(rules: RuleSet, file: str, line: int, case: dict[str, Any],
             coverage: Coverage | None = None) -> tuple[CaseResult, dict[str, Any] | None]:
    """Run one case; returns its result and the response (None when the request was refused).

    With ``coverage``, the request is explained and its trace recorded (the trace is not compared).
    """
    result = CaseResult(file, line, str(case.get("name", f"case at line {line}")))
    request = case.get("request")
    if coverage is not None and isinstance(request, dict):
        request = {**request, "explain": True}
    try:
        response = rules.evaluate(request)
    except RequestError as exc:
        want_error = case.get("error")
        if want_error is None or str(want_error) not in str(exc):
            result.diffs.append(f"request refused: {exc}")
        return result, None
    if "error" in case:
        result.diffs.append(f"expected the request to be refused with {case['error']!r}, but it was answered")
        return result, response
    if coverage is not None:
        coverage.record(response)
    expect = case.get("expect", [])
    expect = [expect] if isinstance(expect, dict) else expect
    decisions = response["decisions"]
    if len(expect) > len(decisions):
        result.diffs.append(f"expected {len(expect)} decisions, got {len(decisions)}")
    for i, (want, got) in enumerate(zip(expect, decisions)):
        result.diffs += _compare(i, want or {}, got)
        result.detail += _unified(i, want or {}, got)
    return result, response


def run_file(rules: RuleSet, path: Path, coverage: Coverage | None = None) -> tuple[list[CaseResult], list[Problem]]:
    """Run every case of one tests file; malformed files give problems instead of results."""
    shown = str(path)
    try:
        data, locations = load_yaml(path.read_text(encoding="utf-8"))
    except (YamlError, OSError, UnicodeDecodeError) as exc:
        line, column = (exc.line, exc.column) if isinstance(exc, YamlError) else (1, 1)
        return [], [Problem(shown, line, column, "E-tests", getattr(exc, "message", str(exc)))]
    cases = data.get("cases") if isinstance(data, dict) else None
    if not isinstance(cases, list):
        return [], [Problem(shown, 1, 1, "E-tests", "a tests file needs a 'cases' list")]
    results = []
    for i, case in enumerate(cases):
        spot = locations.find(("cases", i))
        if not isinstance(case, dict):
            results.append(CaseResult(shown, spot.line, f"case {i + 1}", ["a case must be a mapping"]))
            continue
        results.append(run_case(rules, shown, spot.line, case, coverage)[0])
    return results, []


def run_tests(rules: RuleSet, root: str | Path,
              coverage: Coverage | None = None) -> tuple[list[CaseResult], list[Problem]]:
    """Run every tests file under ``root``, recording rule coverage into ``coverage`` when given."""
    results: list[CaseResult] = []
    problems: list[Problem] = []
    for path in iter_test_files(root):
        file_results, file_problems = run_file(rules, path, coverage)
        results += file_results
        problems += file_problems
    return results, problems
