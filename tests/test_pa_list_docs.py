"""The examples of docs/pa-list.md are the real output of the command and of the public route."""
from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from covreq.cli import main
from service import Settings, create_app

ROOT = Path(__file__).resolve().parent.parent
TEXT = (ROOT / "docs" / "pa-list.md").read_text(encoding="utf-8")


def _block(language: str, index: int = 0) -> str:
    return re.findall(rf"```{language}\n(.*?)```", TEXT, flags=re.S)[index]


def _run(command: str, capsys: pytest.CaptureFixture[str]) -> str:
    args = shlex.split(command)
    assert args[0] == "covreq"
    assert main([a.replace("rules/", str(ROOT / "rules")) for a in args[1:]]) == 0
    return capsys.readouterr().out


def test_the_documented_command_prints_the_documented_csv(capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(_block("sh").strip(), capsys) == _block("csv")


def test_the_documented_json_item_is_the_one_the_command_prints(capsys: pytest.CaptureFixture[str]) -> None:
    command = re.search(r"\(`(covreq report pa-list [^`]+--format json)`", TEXT.replace("\n", " "))
    assert command is not None
    listing = json.loads(_run(command.group(1), capsys))
    documented = json.loads(_block("json"))
    assert documented in listing["items"]


def test_the_documented_url_answers_the_documented_csv(tmp_path: Path) -> None:
    url = re.search(r"curl '(http://127\.0\.0\.1:8000)(/pa-list/[^']+)'", TEXT)
    assert url is not None
    client = TestClient(create_app(str(ROOT / "rules"), Settings(audit_path=tmp_path / "audit.jsonl")))
    response = client.get(url.group(2))
    assert response.status_code == 200 and response.text == _block("csv")
