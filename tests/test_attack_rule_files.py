"""The attacker's suite, rule files: a crafted tree ends in a located load error or loads at a
cost that grows with its size, and nothing it says breaks a request later.

Regression tests are named after the reports of issue 11 they close. Time bounds are hang guards
(generous multiples of the measured figures), not benchmarks.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import engine
from engine.language.checker import MAX_DURATION_YEARS
from engine.language.codes import EXPAND_BUDGET, EXPAND_LIMIT, CodeRange, CodeSet, join, merge_ranges, parse_code_set, parse_member
from engine.language.compiler import shift_date
from engine.loading.compiling import MAX_CODE_GROUPS
from engine.loading.loader import read_tree
from engine.language.parser import MAX_DEPTH, parse_condition

ROOT = Path(__file__).resolve().parent.parent
POLICY = """id: {id}
title: Attack
payer: acme
effective: 2000-01-01
source: {{url: "https://example.org/p"}}
codes: {codes}
rules:
  - when: {when}
    pa_needed: auth-needed
    reason: Needs review.
"""
HANG_GUARD = 10.0  # seconds; each case below measures well under a second
RULES = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def write(folder: Path, when: str = 'place_of_service == "22"', codes: str = "[15823]", name: str = "p",
          policy_id: str = "attack") -> Path:
    """A tree holding one policy file; returns the tree."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.yaml").write_text(POLICY.format(id=policy_id, codes=codes, when=json.dumps(when)))
    return folder


def quickly(action: Callable[[], Any], guard: float = HANG_GUARD) -> Any:
    """Run ``action`` and assert it takes less than ``guard`` seconds of this process's CPU time
    (work, not wall time: a busy machine does not make it miss); return what it returned."""
    began = time.process_time()
    result = action()
    assert time.process_time() - began < guard, "took too long"
    return result


def problems(tree: Path) -> list[tuple[int, int, str, str]]:
    return [(p.line, p.column, p.code, p.message) for p in quickly(lambda: read_tree(tree).problems)]


def request(**facts: Any) -> dict[str, Any]:
    return {"payer": "acme", "date_of_service": "2024-03-14", "place_of_service": "22",
            "services": [{"code": "15823"}], **facts}


# 4. Durations ------------------------------------------------------------------------------------

def test_regression_rule_validates_but_crashes_at_request_time(tmp_path: Path) -> None:
    tree = write(tmp_path, "date_of_service <= patient.birth_date + 99999999999 years")
    ((line, column, code, message),) = problems(tree)
    assert (line, code) == (8, "E-duration-too-long")
    assert message == f"99999999999 years is longer than the limit of {MAX_DURATION_YEARS} years"
    assert column == 31  # the shifted date, where the duration applies


@pytest.mark.parametrize("duration", ["300 years", "3600 months", "15900 weeks", "109800 days"])
def test_the_longest_durations_allowed_load_and_answer(tmp_path: Path, duration: str) -> None:
    rules = engine.load(write(tmp_path, f"date_of_service <= patient.birth_date + {duration}"))
    for birth in ("1900-01-01", "2024-03-14"):
        answer = rules.evaluate(request(patient={"birth_date": birth}))
        assert answer["decisions"][0]["pa_needed"] == "auth-needed"


@pytest.mark.parametrize("duration", ["301 years", "3601 months", "15901 weeks", "109801 days"])
def test_durations_past_the_limit_are_refused_in_every_unit(tmp_path: Path, duration: str) -> None:
    ((_, _, code, _),) = problems(write(tmp_path, f"date_of_service - {duration} <= 2024-01-01"))
    assert code == "E-duration-too-long"


@given(day=st.dates(), sign=st.sampled_from([1, -1]), amount=st.integers(0, 10**40),
       unit=st.sampled_from(["day", "week", "month", "year"]))
def test_date_arithmetic_never_raises(day: dt.date, sign: int, amount: int, unit: str) -> None:
    shifted = shift_date(day, sign, amount, unit)
    assert shifted >= day if sign > 0 else shifted <= day


# 5. Deep nesting ---------------------------------------------------------------------------------

def test_regression_deep_not_crashes_validate_with_a_recursion_error(tmp_path: Path) -> None:
    tree = write(tmp_path, "not " * 400 + 'place_of_service == "22"')
    result = subprocess.run([sys.executable, "-m", "covreq", "validate", str(tree)], capture_output=True,
                            text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode != 0 and "Traceback" not in result.stderr + result.stdout
    expected = f"p.yaml:8:{12 + 4 * MAX_DEPTH}: E-condition-too-deep: condition nests deeper than {MAX_DEPTH} levels"
    assert expected in result.stdout + result.stderr


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 400, 999])  # 999: the longest chain a condition can hold
def test_not_chains_past_the_limit_are_located(depth: int) -> None:
    with pytest.raises(engine.errors.ConditionError) as caught:
        quickly(lambda: parse_condition("not " * depth + "true"))
    assert (caught.value.code, caught.value.line, caught.value.column) == ("E-condition-too-deep", 1, 1 + 4 * MAX_DEPTH)


def test_the_deepest_condition_allowed_loads_and_answers(tmp_path: Path) -> None:
    rules = engine.load(write(tmp_path, "not " * (MAX_DEPTH - 2) + 'place_of_service == "22"'))
    assert rules.evaluate(request())["decisions"][0]["pa_needed"] == "auth-needed"


nested = st.recursive(st.sampled_from(['place_of_service == "22"', "true", "patient.age >= 18"]),
                      lambda inner: st.one_of(inner.map(lambda c: f"not {c}"), inner.map(lambda c: f"({c})"),
                                              st.tuples(inner, st.sampled_from(["and", "or"]), inner)
                                              .map(" ".join)), max_leaves=400)


@RULES
@given(when=nested)
def test_any_nesting_is_loaded_or_located_never_a_crash(tmp_path_factory: pytest.TempPathFactory, when: str) -> None:
    tree = write(tmp_path_factory.mktemp("nest"), when)
    for problem in read_tree(tree).problems:
        assert problem.code in {"E-condition-too-deep", "E-condition-too-long"}, problem


# 6. Load cost ------------------------------------------------------------------------------------

def _codes(items: list[str]) -> str:
    return "[" + ", ".join(items) + "]"


def test_regression_quadratic_load_of_repeated_wide_ranges(tmp_path: Path) -> None:
    tree = write(tmp_path, codes=_codes(["10000-11999"] * 10_000))
    assert (tree / "p.yaml").stat().st_size > 130_000
    rules = quickly(lambda: engine.load(tree), 2.0)  # 9.7 s before, 0.08 s after
    (policy,) = rules.policy_versions()
    (group,) = policy.code_groups
    assert len(group.codes.exact) == 2000 and not group.codes.ranges
    answer = rules.evaluate(request(services=[{"code": "10000"}, {"code": "11999"}, {"code": "12000"}]))
    assert [d["pa_needed"] for d in answer["decisions"]] == ["auth-needed", "auth-needed", "unknown"]


def test_overlapping_ranges_are_merged_before_they_are_expanded(tmp_path: Path) -> None:
    tree = write(tmp_path, codes=_codes([f"{10000 + i}-{11999 + i}" for i in range(10_000)]))
    rules = quickly(lambda: engine.load(tree), 4.0)  # 0.4 s
    (group,) = rules.policy_versions()[0].code_groups
    assert group.codes.ranges == (CodeRange("", 10000, 21998, "", 5),) and not group.codes.exact


def test_seventy_thousand_wide_ranges_load_linearly_and_a_line_costs_microseconds(tmp_path: Path) -> None:
    items = [f"{10000 + i % 80000}-{12000 + i % 80000}" for i in range(70_000)]
    rules = quickly(lambda: engine.load(write(tmp_path, codes=_codes(items))), 20.0)  # 2.4 s
    body = request(services=[{"code": str(20000 + 7 * i)} for i in range(200)])
    began = time.process_time()
    answer = rules.evaluate(body)
    per_line = (time.process_time() - began) / 200
    assert {d["pa_needed"] for d in answer["decisions"]} == {"auth-needed"}
    assert per_line < 0.001, f"{per_line * 1e6:.0f} µs a line"  # 19 µs measured


def test_code_groups_under_too_many_dates_are_refused_once(tmp_path: Path) -> None:
    entries = "".join(f"\n  - {{effective: {dt.date(2000, 1, 1) + dt.timedelta(days=i)}, codes: [{10000 + i}]}}"
                      for i in range(MAX_CODE_GROUPS + 500))
    (line, column, code, message), = problems(write(tmp_path, codes=entries))
    assert (line, column, code) == (7 + MAX_CODE_GROUPS, 5, "E-code-groups")
    assert message.startswith(f"codes are listed under more than {MAX_CODE_GROUPS} different pairs of dates")


def test_a_thousand_dated_groups_load_and_answer_by_date(tmp_path: Path) -> None:
    entries = "".join(f"\n  - {{effective: {dt.date(2000, 1, 1) + dt.timedelta(days=i)}, "
                      f"codes: [{10000 + (i * 2001) % 88000}-{11999 + (i * 2001) % 88000}]}}" for i in range(1000))
    rules = quickly(lambda: engine.load(write(tmp_path, codes=entries)), 5.0)  # 0.5 s
    early = rules.evaluate(request(date_of_service="2000-01-01", services=[{"code": "10000"}, {"code": "12001"}]))
    assert [d["pa_needed"] for d in early["decisions"]] == ["auth-needed", "unknown"]  # 12001 listed from day 2


ranges = st.builds(lambda low, width: CodeRange("", low, low + width, "", 5),
                   st.integers(10000, 99000), st.integers(0, 3000))


@RULES
@given(parts=st.lists(st.lists(ranges, max_size=6), max_size=6), probes=st.lists(st.integers(9990, 99999), max_size=30))
def test_joining_keeps_exactly_the_codes_of_its_parts(parts: list[list[CodeRange]], probes: list[int]) -> None:
    sets = [CodeSet(frozenset(), tuple(rs)) for rs in parts]
    for budget in (3000, EXPAND_BUDGET):  # a small budget leaves short ranges unexpanded: the same codes
        joined = join(sets, budget)
        for number in probes:
            assert (f"{number:05d}" in joined) == any(r.low <= number <= r.high for rs in parts for r in rs)
        assert list(joined.ranges) == merge_ranges(joined.ranges), "the ranges of a joined set are merged"
    assert all(len(r) > EXPAND_LIMIT for r in joined.ranges), "with budget to spare, short ranges are expanded"


def test_condition_sets_are_joined_the_same_way() -> None:
    codes = parse_code_set([f"H0{i}.{j}" for i in range(10) for j in range(10)] + ["A000000-A099999"] * 500, ("ICD-10-CM",))
    assert "A012345" in codes and "H055" in codes and len(codes.ranges) == 1
    assert parse_member("15820-15823", ("CPT",)).ranges  # a member as written is not expanded


# 7. Links ----------------------------------------------------------------------------------------

def test_regression_symlinks_out_of_the_tree_are_followed(tmp_path: Path) -> None:
    secret = tmp_path / "outside" / "secret.yaml"
    secret.parent.mkdir()
    secret.write_text('id: "hunter2-password"\n')
    tree = write(tmp_path / "rules")
    (tree / "leak.yaml").symlink_to(secret)
    (tree / "inner.yaml").symlink_to(tree / "p.yaml")  # a link that stays inside is read
    found = read_tree(tree).problems
    assert [(Path(p.path).name, p.line, p.column, p.code) for p in found if p.code == "E-link"] == [("leak.yaml", 1, 1, "E-link")]
    assert not any("hunter2" in str(p) for p in found)
    assert [p.code for p in found if p.code != "E-link"] == ["E-version-overlap"]  # inner.yaml was read: p.yaml twice


def test_a_rules_folder_that_is_itself_a_link_is_read(tmp_path: Path) -> None:
    tree = write(tmp_path / "real")
    (tmp_path / "current").symlink_to(tree, target_is_directory=True)
    assert len(engine.load(tmp_path / "current")) == 1


def test_a_link_to_a_folder_outside_is_not_followed(tmp_path: Path) -> None:
    outside = write(tmp_path / "outside", policy_id="other")
    tree = write(tmp_path / "rules")
    (tree / "more").symlink_to(outside, target_is_directory=True)
    rules = engine.load(tree)
    assert [p.id for p in rules.policy_versions()] == ["attack"]


def test_fmt_never_rewrites_a_file_outside_the_tree(tmp_path: Path) -> None:
    outside = write(tmp_path / "outside", policy_id="other")
    before = (outside / "p.yaml").read_text()
    tree = write(tmp_path / "rules")
    (tree / "link.yaml").symlink_to(outside / "p.yaml")
    subprocess.run([sys.executable, "-m", "covreq", "fmt", str(tree)], capture_output=True, timeout=60,
                   env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert (outside / "p.yaml").read_text() == before


# Issue 24, item 9: escapes that are not characters ------------------------------------------------

ESCAPED = """id: attack
title: {title}
payer: acme
effective: 2000-01-01
source: {{url: "https://example.org/p"}}
codes: [15823]
rules:
  - when: 'place_of_service == "22"'
    pa_needed: auth-needed
    reason: {reason}
"""


@pytest.mark.parametrize(("title", "reason", "line", "column", "escape"), [
    (r'"\ud800"', "Fine.", 2, 9, r"\ud800"),  # the red team's file
    (r'"ok \U0000DFFF"', "Fine.", 2, 12, r"\U0000DFFF"),
    ("Fine", r'"Needs \\ud800 review \udc00."', 10, 35, r"\udc00"),  # an escaped backslash is no escape
    (r'"\ud83d\ude00"', "Fine.", 2, 9, r"\ud83d"),  # a UTF-16 pair: YAML wants \U0001F600
    (r'"\U00110000"', "Fine.", 2, 9, r"\U00110000"),  # past the last code point: was a ValueError traceback
])
def test_regression_a_lone_surrogate_escape_validates_then_breaks_every_answer(
        tmp_path: Path, title: str, reason: str, line: int, column: int, escape: str) -> None:
    tmp_path.joinpath("p.yaml").write_text(ESCAPED.format(title=title, reason=reason))
    ((at_line, at_column, code, message),) = problems(tmp_path)
    assert (at_line, at_column, code) == (line, column, "E-yaml-escape")
    assert message.startswith(f'"{escape}" ')
    with pytest.raises(engine.LoadError):
        engine.load(tmp_path)


def test_a_surrogate_escape_in_a_key_is_refused_where_it_is_written(tmp_path: Path) -> None:
    tmp_path.joinpath("p.yaml").write_text(ESCAPED.format(title='Fine\n"x\\udbff": 1', reason="Fine."))
    ((line, column, code, message),) = problems(tmp_path)
    assert (line, column, code) == (3, 3, "E-yaml-escape")
    assert "\\udbff" in message


def test_a_pair_of_surrogate_escapes_is_told_its_single_escape(tmp_path: Path) -> None:
    tmp_path.joinpath("p.yaml").write_text(ESCAPED.format(title=r'"\ud83d\ude00"', reason="Fine."))
    ((*_, message),) = problems(tmp_path)
    assert r"\U0001F600" in message


def test_escaped_characters_and_literal_backslash_u_still_load(tmp_path: Path) -> None:
    tmp_path.joinpath("p.yaml").write_text(ESCAPED.format(title=r"'single \ud800 is text'",
                                                          reason=r'"Caf\u00e9 \U0001F600 \\ud800."'))
    rules = engine.load(tmp_path)
    json.dumps(rules.evaluate(request(explain=True))).encode("utf-8")  # every text the answer holds encodes
