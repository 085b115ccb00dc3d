"""CI integration: pre-commit hooks, JUnit and GitHub output of validate, the editor modeline."""
from __future__ import annotations

import json
import shlex
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest
import yaml

from covreq.cli import build_parser, main

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def hooks() -> list[dict[str, object]]:
    return yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())  # type: ignore[no-any-return]


def test_pre_commit_hooks_cover_validate_lint_test_and_fmt() -> None:
    entries = {h["id"]: h for h in hooks()}
    assert set(entries) == {"covreq-validate", "covreq-lint", "covreq-test", "covreq-fmt"}
    commands = build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    for hook in entries.values():
        words = shlex.split(str(hook["entry"]))
        assert words[0] == "covreq" and words[1] in commands and hook["language"] == "python"


@pytest.mark.parametrize("hook", [h["id"] for h in hooks() if h.get("pass_filenames") is False])
def test_each_whole_tree_hook_passes_on_the_bundled_rules(hook: str, monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    entry = next(h for h in hooks() if h["id"] == hook)
    monkeypatch.chdir(ROOT)
    assert main([*shlex.split(str(entry["entry"]))[1:], *entry["args"]]) == 0  # type: ignore[misc]


def test_fmt_hook_receives_file_names_and_fails_on_an_unformatted_file(capsys: pytest.CaptureFixture[str]) -> None:
    entry = next(h for h in hooks() if h["id"] == "covreq-fmt")
    assert entry.get("pass_filenames", True) is True
    tooling = FIXTURES / "tooling" / "fmt"
    assert main([*shlex.split(str(entry["entry"]))[1:], str(tooling / "messy.yaml")]) == 1
    assert main([*shlex.split(str(entry["entry"]))[1:], str(tooling / "formatted.yaml")]) == 0


def test_validate_junit_lists_every_file_and_fails_the_broken_ones(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "--format", "junit", str(FIXTURES / "ten_mistakes")]) == 1
    root = ET.fromstring(capsys.readouterr().out)
    suite = root.find("testsuite")
    assert suite is not None and suite.get("name") == "covreq validate"
    cases = list(suite.iter("testcase"))
    assert len(cases) == 12 and suite.get("failures") == "11"
    failure = cases[0].find("failure")
    assert failure is not None and failure.get("type") == "E-yaml" and ":4:1:" in (failure.text or "")
    assert main(["validate", "--format", "junit", str(ROOT / "rules")]) == 0
    suite = ET.fromstring(capsys.readouterr().out).find("testsuite")
    assert suite is not None and suite.get("failures") == "0"


def test_lint_github_and_json_carry_severity(capsys: pytest.CaptureFixture[str]) -> None:
    expired = str(FIXTURES / "tooling" / "expired")
    main(["lint", expired, "--format", "json", "--today", "2025-01-01"])
    assert json.loads(capsys.readouterr().out)[0]["severity"] == "notice"
    main(["lint", expired, "--format", "github", "--today", "2025-01-01"])
    assert capsys.readouterr().out.startswith("::notice file=")


def test_bundled_policies_carry_the_schema_modeline_documented_for_editors() -> None:
    modeline = "# yaml-language-server: $schema=https://covreq.dev/schema/policy.schema.json"
    assert modeline in (ROOT / "docs" / "authoring.md").read_text()
    for path in (ROOT / "rules").rglob("*.yaml"):
        if not path.name.endswith(".tests.yaml") and path.name != "_payer.yaml":
            assert path.read_text().startswith(modeline + "\n"), path
