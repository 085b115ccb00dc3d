"""The covreq command line: exit codes, output formats and the v1 JSON on stdout."""
from __future__ import annotations

import argparse
import importlib.metadata
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from covreq.cli import EXIT_CODES, build_parser, main

FIXTURES = Path(__file__).resolve().parent / "fixtures"
GOOD, BAD = str(FIXTURES / "good"), str(FIXTURES / "ten_mistakes")


def test_validate_good_tree_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", GOOD]) == 0
    assert "ok: 5 policy version(s)" in capsys.readouterr().err


def test_validate_bad_tree_prints_every_located_problem_and_exits_one(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", BAD]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 11
    assert all(line.startswith(BAD) and ": E-" in line for line in lines)


def test_validate_json_and_github_formats(capsys: pytest.CaptureFixture[str]) -> None:
    main(["validate", "--format", "json", BAD])
    problems = json.loads(capsys.readouterr().out)
    assert {"path", "line", "column", "code", "message", "severity"} <= set(problems[0])
    main(["validate", "--format", "github", BAD])
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith("::error file=") and ",line=4,col=1,title=E-yaml::" in first


def test_eval_reads_stdin_and_prints_the_v1_response(monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    request = {"payer": "medicare", "date_of_service": "2023-03-14", "services": [{"code": "15823"}]}
    monkeypatch.setattr(sys, "stdin", io.StringIO(json.dumps(request)))
    assert main(["eval", "--rules", GOOD, "-"]) == 0
    decision = json.loads(capsys.readouterr().out)["decisions"][0]
    assert decision["pa_needed"] == "conditional" and decision["info_needed"] == ["place_of_service"]


def test_eval_from_file_with_explain(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "req.json"
    path.write_text(json.dumps({"payer": "medicare", "place_of_service": "22", "date_of_service": "2023-03-14",
                                "services": [{"code": "15823"}]}))
    assert main(["eval", "--rules", GOOD, "--explain", str(path)]) == 0
    assert json.loads(capsys.readouterr().out)["decisions"][0]["trace"]


@pytest.mark.parametrize("text, fragment", [("{not json", "invalid JSON"),
                                            ('{"payer": "medicare"}', "services")])
def test_eval_bad_input_exits_two_with_a_message(tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str,
                                                 fragment: str) -> None:
    path = tmp_path / "req.json"
    path.write_text(text)
    assert main(["eval", "--rules", GOOD, str(path)]) == 2
    assert fragment in capsys.readouterr().err


def test_eval_on_a_broken_tree_exits_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "req.json"
    path.write_text("{}")
    assert main(["eval", "--rules", BAD, str(path)]) == 1
    assert "E-yaml" in capsys.readouterr().err


def test_test_command_runs_cases(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["test", GOOD]) == 0
    assert "6 passed, 0 failed" in capsys.readouterr().out


def test_failing_case_is_reported_with_file_line_and_diff(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tests = tmp_path / "bad.tests.yaml"
    tests.write_text("cases:\n  - name: wrong on purpose\n    request: {payer: medicare, date_of_service: 2023-03-14,"
                     " place_of_service: '22', services: [{code: '15823'}]}\n    expect: [{pa_needed: no-auth}]\n")
    assert main(["test", str(tests), "--rules", GOOD]) == 1
    out = capsys.readouterr().out
    assert f"{tests}:2:1: T-fail: wrong on purpose: line 1 pa_needed: expected 'no-auth', got 'auth-needed'" in out


def test_schema_prints_the_policy_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema"]) == 0
    assert json.loads(capsys.readouterr().out)["title"] == "covreq policy file"


def test_console_script_is_installed() -> None:
    script = Path(sys.executable).with_name("covreq")
    result = subprocess.run([str(script), "validate", GOOD], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_version_prints_the_installed_version(capsys: pytest.CaptureFixture[str]) -> None:
    """Regression (issue 15, item 10): there was no `covreq --version`."""
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out == f"covreq {importlib.metadata.version('covreq')}\n"


def test_every_argument_has_help_and_every_command_its_exit_codes() -> None:
    """Regression (issue 15, item 10): arguments without help, exit codes of eval, schema, serve undocumented."""
    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert set(commands.choices) == set(EXIT_CODES)
    for name, parser in commands.choices.items():
        undocumented = [a.dest for a in parser._actions if not a.help]
        assert undocumented == [], name
        text = parser.format_help()
        assert "exit codes:\n  0  " in text and "\n  1  " in text and "\n  2  " in text, name
    assert "(default: 8000)" in commands.choices["serve"].format_help()
    assert "(default: warning)" in commands.choices["lint"].format_help()


def test_serve_without_rules_or_bundle_or_their_variables_is_a_usage_error(monkeypatch: pytest.MonkeyPatch,
                                                                           capsys: pytest.CaptureFixture[str]) -> None:
    """A container sets COVREQ_RULES or COVREQ_BUNDLE_URL instead of --rules/--bundle
    (tests/test_container_image.py serves that way); with neither, serve says what it needs."""
    monkeypatch.delenv("COVREQ_RULES", raising=False)
    monkeypatch.delenv("COVREQ_BUNDLE_URL", raising=False)
    assert main(["serve", "--port", "0"]) == 2
    assert capsys.readouterr().err == ("covreq serve: give --rules PATH or --bundle URL, or set COVREQ_RULES "
                                       "or COVREQ_BUNDLE_URL\n")
