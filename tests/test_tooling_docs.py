"""The authoring guide's tooling examples: every command shown is run and prints what is shown."""
from __future__ import annotations

import difflib
import json
import re
import shlex
from pathlib import Path

import pytest

from covreq.cli import main

ROOT = Path(__file__).resolve().parent.parent
GUIDE = (ROOT / "docs" / "authoring.md").read_text(encoding="utf-8")


def fenced(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", GUIDE, flags=re.S)


def examples() -> list[tuple[str, list[str]]]:
    """(command, expected output lines) for every ``$ covreq ...`` line of a console block."""
    found: list[tuple[str, list[str]]] = []
    for block in fenced("console"):
        for chunk in re.split(r"^\$ ", block, flags=re.M)[1:]:
            command, *output = chunk.rstrip("\n").split("\n")
            found.append((command, output))
    return found


def test_the_guide_shows_every_tooling_command() -> None:
    shown = {shlex.split(command)[1] for command, _ in examples()}
    assert {"validate", "test", "lint", "diff", "fmt", "schema"} <= shown


@pytest.mark.parametrize("command, output", examples(), ids=[c for c, _ in examples()])
def test_command_prints_what_the_guide_shows(command: str, output: list[str], tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    words = shlex.split(command)
    assert words[0] == "covreq"
    if ">" in words:  # `covreq schema > file`: the redirected file is the schema
        monkeypatch.chdir(tmp_path)
        assert main(words[1:words.index(">")]) == 0
        (tmp_path / words[-1]).write_text(capsys.readouterr().out)
        assert json.loads((tmp_path / words[-1]).read_text())["title"] == "covreq policy file"
        return
    monkeypatch.chdir(ROOT)
    expected_exit = 0
    if output and re.fullmatch(r"\(exit \d+\)", output[-1]):
        expected_exit = int(output.pop()[6:-1])
    assert main(words[1:]) == expected_exit
    captured = capsys.readouterr()
    assert (captured.out + captured.err).splitlines() == output


def test_example_files_are_the_ones_shown() -> None:
    for block in fenced("yaml"):
        first, _, body = block.partition("\n")
        if first.startswith("# file: docs/"):
            assert (ROOT / first.removeprefix("# file: ")).read_text(encoding="utf-8") == body, first


def test_the_diff_shown_is_the_change_between_the_example_trees() -> None:
    old = ROOT / "docs/examples/walkthrough/rules/acme/sleep-studies.yaml"
    new = ROOT / "docs/examples/walkthrough/rules-next/acme/sleep-studies.yaml"
    computed = difflib.unified_diff(old.read_text().splitlines(True), new.read_text().splitlines(True), n=3)
    assert "".join(list(computed)[2:]) == fenced("diff")[0]
