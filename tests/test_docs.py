"""Every example in the user documentation works as documented."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

import engine
from engine.language.checker import Checker
from engine.language.facts import FACTS
from engine.language.parser import parse_condition
from engine.language.plain import needed_when
from engine.authoring.testcases import run_file

DOCS = Path(__file__).resolve().parent.parent / "docs"


def blocks(name: str, language: str) -> list[str]:
    text = (DOCS / name).read_text(encoding="utf-8")
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.S)


def test_authoring_guide_policy_payer_and_test_examples_work_together(tmp_path: Path) -> None:
    yaml_blocks = [b for b in blocks("authoring.md", "yaml") if b.strip() and not b.lstrip().startswith("# yaml-language")]
    policy = next(b for b in yaml_blocks if b.startswith("id:"))
    payer = next(b for b in yaml_blocks if b.startswith("payer:"))
    cases = next(b for b in yaml_blocks if b.startswith("cases:"))
    (tmp_path / "medicare").mkdir()
    (tmp_path / "medicare" / "blepharoplasty.yaml").write_text(policy)
    (tmp_path / "medicare" / "_payer.yaml").write_text(payer)
    tests = tmp_path / "medicare" / "blepharoplasty.tests.yaml"
    tests.write_text(cases)
    rules = engine.load(tmp_path)
    results, problems = run_file(rules, tests)
    assert problems == [] and results and all(r.passed for r in results), [r.diffs for r in results]


def test_authoring_guide_example_is_conditional_without_place_of_service(tmp_path: Path) -> None:
    policy = next(b for b in blocks("authoring.md", "yaml") if b.startswith("id:"))
    (tmp_path / "p.yaml").write_text(policy)
    decision = engine.load(tmp_path).evaluate(
        {"payer": "medicare", "date_of_service": "2021-03-01", "services": [{"code": "15823"}]})["decisions"][0]
    assert decision["pa_needed"] == "conditional" and decision["info_needed"] == ["place_of_service"]


@pytest.mark.parametrize("condition", [line for block in blocks("conditions.md", "condition")
                                       for line in block.splitlines() if line.strip()])
def test_condition_reference_examples_parse_and_type_check(condition: str) -> None:
    Checker().check(parse_condition(condition))


def test_the_guide_lists_the_exit_codes_of_every_command() -> None:
    """Regression (issue 15, item 10): the exit codes of eval, schema and serve were not documented."""
    from covreq.cli import EXIT_CODES
    guide = (DOCS / "authoring.md").read_text(encoding="utf-8")
    for name, (ok, problems, usage) in EXIT_CODES.items():
        assert f"| `{name}` | {ok} | {problems} | {usage} |" in guide


def test_the_docs_are_self_contained() -> None:
    """Regression (issue 15, item 12): the docs cited a design document and folders outside the repository."""
    root = DOCS.parent
    for doc in [*DOCS.glob("*.md"), root / "README.md"]:
        text = doc.read_text(encoding="utf-8")
        assert "DESIGN.md" not in text and "shared/anchors" not in text, doc
        links = [t for t in re.findall(r"\]\(([^)#\s]+)", text) if not t.startswith(("http://", "https://"))]
        paths = [t for t in re.findall(r"`((?:\.ci|docs|engine|service|tests|rules|bench|grammar)/[\w./-]*)`", text)]
        missing = [t for t in links if not (doc.parent / t).exists()] + [t for t in paths if not (root / t).exists()]
        assert missing == [], doc


def test_the_plain_english_examples_of_the_guide_are_what_people_read() -> None:
    guide = (DOCS / "authoring.md").read_text(encoding="utf-8")
    section = guide.split("### How people read conditions", 1)[1].split("\n### ", 1)[0]
    policy = yaml.safe_load(next(b for b in blocks("authoring.md", "yaml") if b.startswith("id:")))
    sets = {**policy["value_sets"], **yaml.safe_load(re.search(r"\(`malignant_vcf` here is `(\{.*?\})`", section)[1]
                                                     .replace("{title:", "{malignant_vcf: {title:") + "}")}
    members = {name: entry["values"] if isinstance(entry, dict) else entry for name, entry in sets.items()}
    titles = {name: entry["title"] for name, entry in sets.items() if isinstance(entry, dict)}
    rows = re.findall(r"^\| `(.+?)` \| (.+?) \|$", section, flags=re.M)
    assert len(rows) == 6
    for condition, reads in rows:
        assert needed_when([condition], members, titles) == reads, condition


def test_the_fact_table_says_how_people_read_each_fact_as_the_catalogue_does() -> None:
    text = (DOCS / "conditions.md").read_text(encoding="utf-8")
    read = dict(re.findall(r"^\| `([a-z_.0-9]+)` \|.*\| ([^|]+) \|$", text.split("## Facts", 1)[1].split("\n### ", 1)[0],
                           flags=re.M))
    assert read == {name: spec.title + (f"; one: {spec.member}" if spec.member else "") for name, spec in FACTS.items()}
