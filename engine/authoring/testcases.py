"""Run the YAML test cases kept beside policies (``*.tests.yaml``) against a rule set."""
from __future__ import annotations

import difflib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from engine.authoring.coverage import Coverage
from engine.errors import Problem, RequestError
from engine.loading.files import PAYER_FILE, TESTS_SUFFIX
from engine.loading.schema import check_schema
from engine.loading.source import Problems, Source
from engine.policy import Location
from engine.evaluation.ruleset import RuleSet
from engine.loading.yamlsource import YamlError, load_yaml

_SET_KEYS = {"documentation": "id", "policies": "id", "info_needed": None, "possible": None}
_EXACT_KEYS = ("pa_needed", "covered", "authorization")
EXPECT_KEYS = frozenset(_SET_KEYS) | frozenset(_EXACT_KEYS)
#: The JSON Schema of tests files (``covreq schema tests``).
TESTS_SCHEMA = "tests.schema.json"


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
    """Every ``*.tests.yaml`` file under ``root``, sorted; for one file, the file itself when it is
    a tests file, or the tests file beside it when it is a policy (``x.yaml``: ``x.tests.yaml``)."""
    root = Path(root)
    if root.is_file():
        tests = root if root.name.endswith(TESTS_SUFFIX) else root.with_name(root.stem + TESTS_SUFFIX)
        if tests.is_file():
            yield tests
        return
    yield from sorted(p for p in root.rglob(f"*{TESTS_SUFFIX}") if p.is_file())


def policy_file_of(tests: Path) -> Path:
    """The policy file a tests file is named after (``x.tests.yaml``: ``x.yaml``), which may not exist."""
    return tests.with_name(tests.name.removesuffix(TESTS_SUFFIX) + ".yaml")


def rule_tree_of(path: str | Path) -> Path:
    """The rule tree that ``path`` (a file or folder inside it) belongs to: ``path``'s folder when it
    holds payer folders (folders with ``_payer.yaml``), else the folder holding the nearest payer
    folder on the way up, stopping at a git repository's top; ``path``'s folder when there is none.
    Only the way up is searched, never a sibling's subfolders, so an unrelated tree beside it is
    never taken for its own."""
    start = Path(path).resolve()
    start = start if start.is_dir() else start.parent
    if any(start.glob(f"*/{PAYER_FILE}")):
        return _shown(start, path)
    for folder in (start, *start.parents):
        if (folder / PAYER_FILE).is_file():
            return _shown(folder.parent, path)
        if (folder / ".git").exists():
            break
    return _shown(start, path)


def _shown(folder: Path, given: str | Path) -> Path:
    """``folder`` relative to the working directory when ``given`` was relative, so that reports show
    paths like the ones the user typed."""
    return folder if Path(given).is_absolute() else Path(os.path.relpath(folder))


def _compare(index: int, expected: dict[str, Any], actual: dict[str, Any]) -> list[str]:
    diffs = []
    for key, want in expected.items():
        if key in _EXACT_KEYS:
            got = actual.get(key)
            if got != want:
                diffs.append(f"line {index + 1} {key}: expected {want!r}, got {got!r}")
        else:  # a set: the tests schema allows no other key
            want_set = set(_comparable(key, want, False))
            got_set = set(_comparable(key, actual.get(key), True))
            if got_set != want_set:
                missing, extra = sorted(want_set - got_set), sorted(got_set - want_set)
                diffs.append(f"line {index + 1} {key}: expected {sorted(want_set)}, got {sorted(got_set)}"
                             + (f" (missing {missing})" if missing else "") + (f" (unexpected {extra})" if extra else ""))
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


def read_file(path: Path, rejected: list[tuple[int, dict[str, Any]]] | None = None
              ) -> tuple[list[tuple[int, dict[str, Any]]], list[Problem]]:
    """The cases of one tests file with their lines, and the file's problems where it breaks the tests
    schema (a misspelt key, a case without ``expect`` or ``error``); a case with a problem is not
    among the cases but is added to ``rejected``, when given."""
    shown = str(path)
    try:
        text = path.read_text(encoding="utf-8")
        data, locations = load_yaml(text)
    except (YamlError, OSError, UnicodeDecodeError) as exc:
        line, column, code = (exc.line, exc.column, exc.code) if isinstance(exc, YamlError) else (1, 1, "E-io")
        return [], [Problem(shown, line, column, code, getattr(exc, "message", str(exc)))]
    problems = Problems()
    if not isinstance(data, dict):
        problems.add(Location(shown, 1, 1), "E-schema", "a tests file must be a YAML mapping with a 'cases' list")
        return [], sorted(problems)
    errors = check_schema(Source(shown, data, locations, text), TESTS_SCHEMA, problems)
    cases = data.get("cases")
    bad = {error.absolute_path[1] for error in errors if len(error.absolute_path) > 1}
    if not isinstance(cases, list) or any(len(error.absolute_path) < 2 for error in errors):
        return [], sorted(problems)
    located = [(locations.find(("cases", i)).line, case) for i, case in enumerate(cases)]
    if rejected is not None:
        rejected += [pair for i, pair in enumerate(located) if i in bad]
    return [pair for i, pair in enumerate(located) if i not in bad], sorted(problems)


def run_file(rules: RuleSet, path: Path, coverage: Coverage | None = None) -> tuple[list[CaseResult], list[Problem]]:
    """Run every case of one tests file, with the file's problems. A case the schema rejects is not
    run, but its request is still tried, so that a refused request is reported beside the schema's
    problems rather than after they are fixed."""
    rejected: list[tuple[int, dict[str, Any]]] = []
    cases, problems = read_file(path, rejected)
    results = [run_case(rules, str(path), line, case, coverage)[0] for line, case in cases]
    for line, case in rejected:
        if isinstance(case, dict) and isinstance(case.get("request"), dict) and "error" not in case:
            tried = run_case(rules, str(path), line, {"name": case.get("name", f"case at line {line}"),
                                                      "request": case["request"]})[0]
            results += [tried] if not tried.passed else []
    return results, problems


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
