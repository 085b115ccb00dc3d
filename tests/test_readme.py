"""README's quick tour does what it says (run as a user would, from the repository root)."""
from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import engine

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
COVREQ = str(Path(sys.executable).with_name("covreq"))


def test_readme_opens_with_the_serve_and_test_commands() -> None:
    first_block = re.search(r"```sh\n(.*?)```", README, flags=re.S).group(1)  # type: ignore[union-attr]
    commands = [line for line in first_block.splitlines() if line and not line.startswith("#")]
    assert commands[0].endswith(".venv/bin/covreq serve --rules rules/")
    assert commands[1].endswith(".venv/bin/python -m pytest -n auto")
    assert commands[1] in (ROOT / ".ci" / "run").read_text(encoding="utf-8")


def test_quick_tour_validate_test_and_eval() -> None:
    tour = re.search(r"## Quick tour\n\n```sh\n(.*?)```", README, flags=re.S).group(1)  # type: ignore[union-attr]
    assert subprocess.run([COVREQ, "validate", "rules/"], cwd=ROOT, capture_output=True, timeout=120).returncode == 0
    assert subprocess.run([COVREQ, "test", "rules/"], cwd=ROOT, capture_output=True, timeout=120).returncode == 0
    request = re.search(r"echo '(.*?)'", tour, flags=re.S).group(1)  # type: ignore[union-attr]
    result = subprocess.run([COVREQ, "eval", "--rules", "rules/"], input=request, cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    decision = json.loads(result.stdout)["decisions"][0]
    assert decision["pa_needed"] == "auth-needed" and decision["documentation"]
    assert decision["policies"][0]["url"].startswith("https://www.cms.gov/")
    without_setting = json.loads(request)
    del without_setting["place_of_service"]
    again = engine.load(ROOT / "rules").evaluate(without_setting)["decisions"][0]
    assert (again["pa_needed"], again["info_needed"]) == ("conditional", ["place_of_service"])


def test_library_example_prints_what_the_readme_shows() -> None:
    block = re.search(r"```python\n(.*?)```", README, flags=re.S).group(1)  # type: ignore[union-attr]
    body = ast.literal_eval(re.search(r"rules\.evaluate\((\{.*?\})\)", block, flags=re.S).group(1))  # type: ignore[union-attr]
    shown = re.search(r"# (\w+) (\[.*\])", block).groups()  # type: ignore[union-attr]
    decision = engine.load(ROOT / "rules").evaluate(body)["decisions"][0]
    assert (decision["pa_needed"], decision["info_needed"]) == (shown[0], ast.literal_eval(shown[1]))
