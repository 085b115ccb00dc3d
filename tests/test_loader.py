"""Loading rule trees: every mistake is reported with its location; random input never crashes."""
from __future__ import annotations

import ctypes
import os
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import engine
from engine.loading.files import release_freed_memory
from engine.loading.loader import read_tree

FIXTURES = Path(__file__).resolve().parent / "fixtures"

EXPECTED = {  # file -> (line, column, code) of the single problem planted in it
    "01-yaml.yaml": (4, 1, "E-yaml"),
    "02-schema.yaml": (6, 1, "E-schema"),
    "03-grammar.yaml": (8, 37, "E-syntax"),
    "04-unknown-fact.yaml": (8, 11, "E-unknown-fact"),
    "05-type.yaml": (8, 30, "E-type"),
    "06-code.yaml": (6, 9, "E-code"),
    "07-range.yaml": (6, 9, "E-code"),
    "08-duplicate-rule.yaml": (11, 5, "E-duplicate-id"),
    "09-dangling-doc.yaml": (10, 21, "E-unknown-doc"),
    "10-dangling-value-set.yaml": (10, 31, "E-unknown-value-set"),
    "11-overlap-b.yaml": (1, 5, "E-version-overlap"),
}


def test_every_mistake_of_a_tree_is_reported_at_once_with_its_location() -> None:
    tree = read_tree(FIXTURES / "ten_mistakes")
    found = {Path(p.path).name: (p.line, p.column, p.code) for p in tree.problems}
    assert found == EXPECTED
    assert len(tree.problems) == len(EXPECTED)


def test_load_raises_one_error_listing_all_problems() -> None:
    with pytest.raises(engine.LoadError) as info:
        engine.load(FIXTURES / "ten_mistakes")
    assert len(info.value.problems) == len(EXPECTED)
    assert str(info.value.problems[0]).startswith(str(FIXTURES / "ten_mistakes" / "payer-a" / "01-yaml.yaml") + ":4:1: E-yaml:")


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


POLICY = """\
id: p
title: T
payer: acme
effective: 2024-01-01
source: {url: "https://example.org"}
codes: ["99213"]
"""


@pytest.mark.parametrize("extra, line, column, code", [
    ("rules:\n  - when: |\n      units > 1 and\n      nope == 1\n", 10, 7, "E-unknown-fact"),
    ("rules:\n  - when: \"units >> 1\"\n", 8, 19, "E-syntax"),
    ("end: 2023-01-01\n", 7, 6, "E-date"),
    ("extends: base\nplans: [x]\n", 7, 10, "E-extends"),
    ("rules:\n  - {when: true, pa_needed: maybe}\n", 8, 29, "E-schema"),
    ("value_sets: {pos: [\"19\"]}\nrules:\n  - when: code in pos\n", 9, 19, "E-literal"),
    ("a: &a [x, x, x, x, x, x, x, x, x]\n", 7, 1, "E-schema"),
])
def test_problems_inside_files_point_at_the_exact_place(tmp_path: Path, extra: str, line: int, column: int,
                                                        code: str) -> None:
    write(tmp_path, "p.yaml", POLICY + extra)
    problems = read_tree(tmp_path).problems
    assert [(p.line, p.column, p.code) for p in problems] == [(line, column, code)]


def test_alias_bomb_is_refused_quickly(tmp_path: Path) -> None:
    bomb = "a: &a [x,x,x,x,x,x,x,x,x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},"
        f"*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)}]\n" for i in range(8))
    write(tmp_path, "bomb.yaml", bomb)
    assert [p.code for p in read_tree(tmp_path).problems] == ["E-yaml-too-large"]


def test_oversized_file_is_refused(tmp_path: Path) -> None:
    write(tmp_path, "big.yaml", POLICY + "notes: " + "x" * 1_100_000 + "\n")
    assert [p.code for p in read_tree(tmp_path).problems] == ["E-file-too-large"]


def test_leading_zero_codes_keep_their_spelling(tmp_path: Path) -> None:
    write(tmp_path, "p.yaml", POLICY.replace('["99213"]', "[0596T, 01234]") + "rules: [{when: true, pa_needed: auth-needed}]\n")
    rules = engine.load(tmp_path)
    answer = rules.evaluate({"payer": "acme", "date_of_service": "2024-05-01", "services": [{"code": "01234"}]})
    assert answer["decisions"][0]["pa_needed"] == "auth-needed"


def test_numbers_in_dated_code_groups_and_value_sets_keep_their_spelling_and_a_bad_one_its_place(tmp_path: Path) -> None:
    codes = 'codes:\n  - {codes: [01234, 0596T], effective: 2024-03-01}\n  - {codes: ["99213", 1234], end: 2024-12-31}\n'
    rest = "value_sets: {zeros: [07, 19, '22']}\nrules: [{when: place_of_service in zeros, pa_needed: auth-needed}]\n"
    write(tmp_path, "p.yaml", POLICY.replace('codes: ["99213"]\n', codes) + rest)
    assert [(p.line, p.column, p.code) for p in read_tree(tmp_path).problems] == [(8, 23, "E-code")]
    write(tmp_path, "p.yaml", POLICY.replace('codes: ["99213"]\n', codes.replace(", 1234]", "]")) + rest)
    (policy,) = engine.load(tmp_path).policy_versions()
    assert policy.value_sets["zeros"] == ("07", "19", "22")
    assert [sorted(g.codes.exact) for g in policy.code_groups] == [["01234", "0596T"], ["99213"]]


def test_tests_files_and_hidden_or_underscore_files_are_not_policies(tmp_path: Path) -> None:
    write(tmp_path, "p.yaml", POLICY)
    write(tmp_path, "p.tests.yaml", "cases: []\n")
    write(tmp_path, "_draft.yaml", "not: a policy\n")
    assert len(engine.load(tmp_path)) == 1


def test_digest_changes_with_content_and_only_with_content(tmp_path: Path) -> None:
    write(tmp_path, "p.yaml", POLICY)
    first, again = engine.load(tmp_path).digest, engine.load(tmp_path).digest
    write(tmp_path, "p.yaml", POLICY.replace("title: T", "title: U"))
    assert first == again != engine.load(tmp_path).digest


def test_missing_path_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    assert [p.code for p in read_tree(tmp_path / "nope").problems] == ["E-io"]


yaml_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=12),
                         st.sampled_from(["2024-01-01", "2024-13-01", "15820-15823", "units > 1", "true",
                                          "place_of_service in {\"22\"}", "J0585", "auth-needed"]))
yaml_values = st.recursive(yaml_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4),
    st.dictionaries(st.sampled_from(["id", "title", "payer", "effective", "end", "source", "url", "codes",
                                     "rules", "when", "pa_needed", "documentation", "text", "plans", "extends",
                                     "value_sets", "default", "x"]), inner, max_size=6)), max_leaves=25)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=yaml_values)
def test_random_policy_shaped_documents_give_only_problems(tmp_path: Path, doc: object) -> None:
    write(tmp_path, "random.yaml", yaml.safe_dump(doc))
    for problem in read_tree(tmp_path).problems:
        assert problem.line >= 1 and problem.code.startswith("E-")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.lists(st.sampled_from(list("abc:-[]{}&*!|>'\"#\n 12.") + ["id: ", "when: ", "\n  - "]),
                    max_size=40).map("".join))
def test_random_yaml_text_gives_only_problems(tmp_path: Path, text: str) -> None:
    write(tmp_path, "random.yaml", text)
    try:
        engine.load(tmp_path)
    except engine.LoadError as exc:
        assert all(p.line >= 1 for p in exc.problems)


def test_every_problem_of_one_file_is_reported_not_only_the_schemas(tmp_path: Path) -> None:
    """Regression (issue 15, item 3): a bad date plus a misspelt key reported only the key."""
    write(tmp_path, "p.yaml", POLICY.replace("2024-01-01", "2024-02-30") + "rulez: []\n"
          "rules:\n  - {when: true, pa_needed: maybe}\n  - {when: units >> 1}\n"
          "documentation: {x: {txt: y}}\n")
    found = [(p.line, p.column, p.code) for p in read_tree(tmp_path).problems]
    assert found == [(4, 12, "E-date"), (7, 1, "E-schema"), (9, 29, "E-schema"), (10, 19, "E-syntax"),
                     (11, 20, "E-schema"), (11, 21, "E-schema")]


def test_a_file_missing_required_keys_reports_the_schema_problem_only(tmp_path: Path) -> None:
    write(tmp_path, "p.yaml", POLICY.replace("title: T\n", "") + "rules: [{when: nope}]\n")
    assert [p.code for p in read_tree(tmp_path).problems] == ["E-schema"]


PLAN = "id: p-{0}\nextends: p\nplans: [{0}]\n"


def test_a_broken_base_is_reported_once_however_many_overrides_extend_it(tmp_path: Path) -> None:
    """Regression (issue 15, item 4): every plan override repeated its base's problems."""
    write(tmp_path, "p.yaml", POLICY + "rules: [{when: patient.age > \"65\"}]\n")
    for plan in ("gold", "silver", "bronze"):
        write(tmp_path, f"{plan}.yaml", PLAN.format(plan))
    problems = read_tree(tmp_path).problems
    assert [(Path(p.path).name, p.line, p.code) for p in problems] == [("p.yaml", 7, "E-type")]
    with pytest.raises(engine.LoadError) as info:
        engine.load(tmp_path)
    assert len(info.value.problems) == 1


@pytest.mark.parametrize("broken", [
    POLICY.replace("payer: acme", "payer: acme\n  oops: 1"),  # YAML: an indentation slip
    POLICY.replace("title: T\n", ""),  # schema: a required key missing
])
def test_overrides_of_a_base_that_could_not_be_read_add_no_follow_on_problems(tmp_path: Path, broken: str) -> None:
    """Regression (issue 15, item 7): a base with an indentation slip made its override report
    "base policy is not defined"."""
    write(tmp_path, "p.yaml", broken)
    write(tmp_path, "gold.yaml", PLAN.format("gold"))
    problems = read_tree(tmp_path).problems
    assert len(problems) == 1 and Path(problems[0].path).name == "p.yaml"


def test_an_override_of_a_base_missing_from_the_tree_is_still_reported(tmp_path: Path) -> None:
    write(tmp_path, "gold.yaml", PLAN.format("gold").replace("extends: p", "extends: q"))
    write(tmp_path, "p.yaml", POLICY)
    assert [p.code for p in read_tree(tmp_path).problems] == ["E-extends"]


@pytest.mark.parametrize("text, line, column, message", [
    ("reason: Note: see above\n", 1, 13, "a value holds ': ', which YAML reads as the start of a key; quote the "
                                         "whole value"),
    ("rules:\n  - when: true\n    pa_needed: no-auth\n   reason: x\n", 4, 4,
     "this key is indented 1 space less than the keys above it: move it to column 5, like line 2"),
    ("id: x\n\ttitle: y\n", 2, 1, "this line is indented with a tab, and YAML allows only spaces"),
    ("reason: \"abc\ntitle: y\n", 3, 1, "a quoted value is never closed; add the closing quote to the value "
                                       "that starts at line 1, column 9"),
    ("codes: [\"1\", \"2\"\ntitle: y\n", 2, 1, "a [ ... ] list is not closed, or misses a comma"),
    ("source: {url: x\n", 2, 1, "a { ... } mapping is not closed, or misses a comma"),
    ("id: x\ntitle\npayer: z\n", 2, 1, "this line is neither 'key: value' nor indented under a key; add the ':'"),
    ("codes: [*]\n", 1, 10, "'*' starts an alias in YAML; quote a value"),
    ("reason: @home\n", 1, 9, "a value cannot start with '@'; quote the value"),
    ("reason: 'it's'\n", 1, 13, "more text after a value; quote the whole value"),
    ("id: x\n- a\n", 2, 1, "a list item where a key was expected"),
])
def test_common_yaml_mistakes_are_reworded_with_a_hint(tmp_path: Path, text: str, line: int, column: int,
                                                       message: str) -> None:
    """Regression (issue 15, item 7): YAML errors repeated PyYAML's wording with no hint."""
    write(tmp_path, "p.yaml", text)
    problems = read_tree(tmp_path).problems
    assert [(p.line, p.column, p.code) for p in problems] == [(line, column, "E-yaml")]
    assert problems[0].message.startswith(message)


def test_references_into_a_misspelt_catalogue_are_not_reported_again(tmp_path: Path) -> None:
    write(tmp_path, "p.yaml", POLICY + "rules: [{when: true, documentation: [notes]}]\n"
          "documentaton: {notes: {text: Notes}}\n")
    problems = read_tree(tmp_path).problems
    assert [p.message for p in problems] == ["unknown key 'documentaton'; did you mean 'documentation'?"]


def test_a_base_date_problem_is_located_in_the_base_and_reported_once(tmp_path: Path) -> None:
    write(tmp_path, "p.yaml", POLICY.replace("2024-01-01", "2024-02-30"))
    write(tmp_path, "gold.yaml", PLAN.format("gold"))
    problems = read_tree(tmp_path).problems
    assert [(Path(p.path).name, p.line, p.column, p.code) for p in problems] == [("p.yaml", 4, 12, "E-date")]


def _resident_mb() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


@pytest.mark.skipif(not Path("/proc/self/statm").exists() or not hasattr(ctypes.CDLL(None), "malloc_trim"),
                    reason="glibc's malloc_trim, resident memory from /proc")
def test_memory_a_load_freed_is_given_back_to_the_system() -> None:
    kept, freed = [], []
    for i in range(2000):  # 100 MB in blocks the C heap serves, every tenth kept between the freed
        (kept if i % 10 == 0 else freed).append(b"x" * 50_000)
    del freed
    before = _resident_mb()
    release_freed_memory()
    assert before - _resident_mb() > 50
    assert len(kept) == 200


@pytest.mark.parametrize("when, column, message", [
    ('plan == "traditonal-choice"', 19, "\"traditonal-choice\" is not a plan of payer 'acme' (its plans are "
                                        "traditional-choice), so plan can never equal it; did you mean "
                                        "'traditional-choice'?"),
    ('place_of_service in {"11", "221"}', 38, '"221" is not a CMS place-of-service code'),
    ('state == "NX" or state in {"N*"}', 20, '"NX" is not a US state, district or territory code, so state can '
                                             'never equal it'),
    ('known(type_of_bill) and type_of_bill == "0131"', 51, '"0131" can never match type_of_bill'),
    ('modifiers contains "rt"', 30, '"rt" can never match modifiers'),
])
def test_a_value_outside_its_facts_vocabulary_is_a_located_error(tmp_path: Path, when: str, column: int,
                                                                  message: str) -> None:
    """Regression (issue 27, item 1): `plan == "traditonal-choice"` validated although always false."""
    (tmp_path / "_payer.yaml").write_text("payer: acme\nplans: {traditional-choice: Traditional}\n")
    (tmp_path / "mri.yaml").write_text(
        "id: acme-mri\ntitle: MRI\npayer: acme\neffective: 2024-01-01\n"
        "source: {url: \"https://policies.acme.test/mri\"}\ncodes: [\"70551\"]\nrules:\n"
        f"  - when: {when}\n    pa_needed: auth-needed\n  - when: true\n    pa_needed: no-auth\n")
    problems = [(p.code, p.line, p.column, p.message) for p in read_tree(tmp_path).problems]
    assert [(code, line, col) for code, line, col, _ in problems] == [("E-unknown-value", 8, column)], problems
    assert message in problems[0][3]


def test_a_value_set_title_is_kept_and_a_bad_one_or_a_titled_set_without_values_is_located(tmp_path: Path) -> None:
    sets = ("value_sets:\n"
            "  good: {title: malignant vertebral compression fracture, values: [C79.51, C90.0*]}\n"
            "  plain: [C41.2]\n"
            "rules:\n  - when: diagnoses overlaps good or diagnoses overlaps plain\n    pa_needed: auth-needed\n")
    write(tmp_path, "p.yaml", POLICY + sets)
    (policy,) = read_tree(tmp_path).policies
    assert policy.value_sets == {"good": ("C79.51", "C90.0*"), "plain": ("C41.2",)}
    assert policy.value_set_titles == {"good": "malignant vertebral compression fracture"}
    write(tmp_path, "p.yaml", POLICY + "value_sets:\n  bad:\n    title: 'a \"quoted\" title'\n    values: [C41.2]\n"
                                       "  empty: {title: nothing}\n")
    found = {(p.line, p.column, p.code, p.message.split(":")[0]) for p in read_tree(tmp_path).problems}
    assert found == {(9, 12, "E-schema", "value_sets.bad.title"), (11, 10, "E-schema", "value_sets.empty")}


@pytest.mark.parametrize("where", ["rule", "default", "add_documentation"])
def test_a_value_outside_its_vocabulary_in_a_documentation_condition_is_a_located_error(tmp_path: Path,
                                                                                        where: str) -> None:
    """A documentation item owed only "when place_of_service == '221'" could never be owed: the same
    E-unknown-value as in a rule's condition, located at the literal."""
    ref = "[{id: notes, when: 'place_of_service == \"221\"'}]"
    body = ("id: acme-mri\ntitle: MRI\npayer: acme\neffective: 2024-01-01\n"
            "source: {url: \"https://policies.acme.test/mri\"}\ncodes: [\"70551\"]\n"
            "documentation: {notes: {text: Notes}}\n")
    if where == "rule":
        body += f"rules:\n  - when: true\n    pa_needed: auth-needed\n    documentation: {ref}\n"
    elif where == "default":
        body += f"rules:\n  - when: false\n    pa_needed: no-auth\ndefault:\n  pa_needed: auth-needed\n  documentation: {ref}\n"
    else:  # a plan override adding documentation to its base's answers
        (tmp_path / "mri.yaml").write_text(body + "rules:\n  - when: true\n    pa_needed: auth-needed\n")
        body = f"id: acme-mri-gold\nextends: acme-mri\nplans: [gold]\nadd_documentation: {ref}\n"
    (tmp_path / ("mri-gold.yaml" if where == "add_documentation" else "mri.yaml")).write_text(body)
    problems = [(p.code, p.line, p.message) for p in read_tree(tmp_path).problems]
    line = body[:body.index('"221"')].count("\n") + 1
    column = body.splitlines()[line - 1].index('"221"') + 1
    assert [(code, ln) for code, ln, _ in problems] == [("E-unknown-value", line)], problems
    assert '"221" is not a CMS place-of-service code' in problems[0][2]
    assert [(p.line, p.column) for p in read_tree(tmp_path).problems] == [(line, column)]
