"""The batch worklist: CSV/JSONL in and out, orders evaluated together, rejected rows, summary, progress."""
from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path
from typing import Any

import pytest

import engine
from engine.worklists.batch import OUTPUT_COLUMNS, run
from covreq.cli import main
from engine.worklists.progress import Progress

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "rules"
EXAMPLES = ROOT / "docs" / "examples"
HEADER = "order_id,payer,date_of_service,place_of_service,birth_date,diagnoses,code,modifiers,units"


@pytest.fixture(scope="module")
def bundled() -> engine.RuleSet:
    return engine.load(RULES)


def batch(tmp_path: Path, text: str, capsys: pytest.CaptureFixture[str], suffix: str = ".csv",
          out: str = "out.csv") -> tuple[int, list[dict[str, Any]], str]:
    """Run ``covreq batch`` on ``text``; return the exit code, the output rows and stderr."""
    source, target = tmp_path / f"orders{suffix}", tmp_path / out
    source.write_text(text, encoding="utf-8")
    code = main(["batch", "--rules", str(RULES), str(source), "-o", str(target)])
    err = capsys.readouterr().err
    if not target.exists():
        return code, [], err
    if target.suffix == ".csv":
        return code, list(csv.DictReader(target.open(encoding="utf-8", newline=""))), err
    return code, [json.loads(line) for line in target.read_text(encoding="utf-8").splitlines()], err


def csv_text(*rows: str) -> str:
    return "\n".join([HEADER, *rows]) + "\n"


def test_docs_example_output_and_summary_are_what_the_command_gives(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "orders.out.csv"
    code = main(["batch", "--rules", str(RULES), str(EXAMPLES / "orders.csv"), "-o", str(target)])
    err = capsys.readouterr().err
    assert code == 1  # the example carries one bad row on purpose
    produced = list(csv.DictReader(target.open(encoding="utf-8")))
    documented = list(csv.DictReader((EXAMPLES / "orders.out.csv").open(encoding="utf-8")))
    assert [{k: v for k, v in r.items() if k != "ruleset"} for r in produced] == \
           [{k: v for k, v in r.items() if k != "ruleset"} for r in documented]
    page = (ROOT / "docs" / "lookup.md").read_text(encoding="utf-8")
    assert err in page
    for row in produced:  # the page's excerpt table agrees with the output file
        count = len(row["documentation"].split("; ")) if row["documentation"] else 0
        cells = [row["row"], row["order_id"], row["code"], row["pa_needed"], f"{count} item(s)" if count else "-",
                 row["info_needed"] or row["authorization"] or "-", row["policies"] or "-"]
        assert "| " + " | ".join(cells) + " |" in page, cells


def test_output_has_one_row_per_line_with_documentation_and_policy_links(tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    code, rows, err = batch(tmp_path, csv_text("A,medicare,2024-03-14,22,1950-02-01,H02.831,15823,,1"), capsys)
    assert code == 0
    assert list(rows[0]) == list(OUTPUT_COLUMNS)
    row = rows[0]
    assert (row["row"], row["order_id"], row["line"], row["pa_needed"], row["covered"]) == \
           ("2", "A", "1", "auth-needed", "covered")
    assert "preop-photos" in row["documentation"].split("; ")
    assert row["policies"] == "medicare-opd-blepharoplasty"
    assert row["policy_urls"].startswith("https://www.cms.gov/")
    assert "prior authorization" in row["reasons"]
    assert row["as_of"] == "2024-03-14" and row["ruleset"]
    assert "1 need prior authorization" in err and "rejected" in err


def test_lines_of_one_order_are_evaluated_together(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    together = csv_text("A,medicare,2024-03-14,22,,,64612,,1", "A,,,,,,J0585,,100")
    apart = csv_text("A,medicare,2024-03-14,22,,,64612,,1", "B,medicare,2024-03-14,22,,,J0585,,100")
    _, rows, _ = batch(tmp_path, together, capsys)
    assert [r["pa_needed"] for r in rows] == ["auth-needed", "auth-needed"]
    _, rows, _ = batch(tmp_path, apart, capsys)
    assert [(r["pa_needed"], r["info_needed"]) for r in rows] == [("conditional", "other_codes")] * 2


def test_order_complete_column_closes_the_order(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    header = "order_id,payer,date_of_service,place_of_service,code,order_complete\n"
    complete = header + "A,medicare,2024-03-14,22,64612,yes\nB,medicare,2024-03-14,22,J0585,true\n"
    _, rows, _ = batch(tmp_path, complete, capsys)
    assert [r["pa_needed"] for r in rows] == ["no-auth", "no-auth"]
    code, rows, err = batch(tmp_path, header + "A,medicare,2024-03-14,22,64612,maybe\n", capsys)
    assert rows == [] and "order_complete: must be true or false" in err


def test_rows_of_an_order_need_not_be_adjacent_and_output_keeps_input_order(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = csv_text("A,medicare,2024-03-14,22,,,64612,,1", "B,medicare,2024-03-14,11,,,15823,,1",
                    "A,medicare,2024-03-14,22,,,J0585,,100")
    code, rows, err = batch(tmp_path, text, capsys)
    assert code == 0
    assert [(r["row"], r["order_id"], r["line"], r["pa_needed"]) for r in rows] == \
           [("2", "A", "1", "auth-needed"), ("3", "B", "1", "no-auth"), ("4", "A", "2", "auth-needed")]
    assert "3 service line(s) in 2 order(s)" in err


def test_a_bad_row_rejects_its_order_with_row_numbers_and_the_rest_is_answered(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = csv_text("A,medicare,2024-03-14,22,,,64612,,1", "A,,,,,,J058,,1", "B,medicare,2024-03-14,22,,,15823,,1")
    code, rows, err = batch(tmp_path, text, capsys)
    assert code == 1
    assert [r["order_id"] for r in rows] == ["B"]
    assert "row 3: code: 'J058' is not a CPT or HCPCS Level II code; skipped" in err
    assert "row 2: its order was rejected with row 3; skipped" in err
    assert "2 input row(s) rejected" in err


def test_a_worklist_without_order_id_answers_each_row_as_its_own_order(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Regression (issue 15, item 14): a worklist without an order_id column was refused."""
    text = ("payer,date_of_service,place_of_service,code\nmedicare,2024-03-14,22,15823\n"
            "medicare,2024-03-14,11,15823\n\nmedicare,2024-03-14,22,15823\n")
    code, rows, err = batch(tmp_path, text, capsys)
    assert code == 0
    assert [(r["row"], r["order_id"], r["line"], r["pa_needed"]) for r in rows] == \
           [("2", "row 2", "1", "auth-needed"), ("3", "row 3", "1", "no-auth"), ("5", "row 5", "1", "auth-needed")]
    assert err.count("no order_id column: each row is an order of its own") == 1
    assert "3 service line(s) in 3 order(s) answered" in err


@pytest.mark.parametrize("row, reason", [
    ("A,medicare,2024-03-14,22,,,15823,,one", "row 2: units: 'one' is not a number"),
    (",medicare,2024-03-14,22,,,15823,,1", "row 2: order_id: is required"),
    ("A,medicare,2024-03-14,22,,,,,1", "row 2: code: is required"),
    ("A,aetna,2024-03-14,22,,,15823,,1", "row 2: payer: unknown payer 'aetna'"),
    ("A,medicare,03/14/2024,22,,,15823,,1", "row 2: date_of_service: '03/14/2024' is not a date"),
    ("A,medicare,2024-03-14,22,,,15823,,1,extra", "row 2: has 10 cells; the header names 9 columns"),
])
def test_each_kind_of_bad_row_is_reported_with_its_reason(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                          row: str, reason: str) -> None:
    code, rows, err = batch(tmp_path, csv_text(row, "Z,medicare,2024-03-14,22,,,15823,,1"), capsys)
    assert code == 1
    assert reason in err
    assert [r["order_id"] for r in rows] == ["Z"]


def test_rows_of_one_order_must_agree_on_order_facts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = csv_text("A,medicare,2024-03-14,22,,H02.831;H02.834,15823,,1", "A,medicare,2024-03-14,22,,H02.834 H02.831,15822,,1",
                    "A,medicare,2024-03-14,11,,,67904,,1")
    code, rows, err = batch(tmp_path, text, capsys)
    assert code == 1 and rows == []
    assert "row 4: place_of_service: differs from row 2 of the same order" in err
    assert "row 3: its order was rejected with row 4" in err


def test_patient_values_are_never_echoed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = batch(tmp_path, csv_text("A,medicare,2024-03-14,22,1950-13-45,,15823,,1"), capsys)
    assert code == 1
    assert "row 2: birth_date: is not valid (the value is patient data and is not shown)" in err
    assert "1950-13-45" not in err
    code, _, err = batch(tmp_path, csv_text("A,medicare,2024-03-14,22,1950-01-01,,15823,,1",
                                            "A,medicare,2024-03-14,22,1951-01-01,,15822,,1"), capsys)
    assert "row 3: birth_date: differs from row 2" in err and "1951" not in err


def test_one_digit_place_of_service_from_a_spreadsheet_is_read_with_its_zero(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = "order_id,payer,date_of_service,place_of_service,code\nA,medicare,2024-03-14,2,15823\n"
    _, rows, _ = batch(tmp_path, text, capsys)
    assert rows[0]["pa_needed"] == "no-auth"  # POS 02 (telehealth), not 22 and not an error


def test_authorization_columns_answer_satisfied_and_blame_their_own_column(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    head = "order_id,payer,date_of_service,place_of_service,code,auth_id,auth_start,auth_end\n"
    _, rows, _ = batch(tmp_path, head + "A,medicare,2024-03-14,22,15823,UTN1,2024-03-01,2024-06-28\n", capsys)
    assert (rows[0]["pa_needed"], rows[0]["authorization"]) == ("satisfied", "UTN1")
    code, _, err = batch(tmp_path, head + "A,medicare,2024-03-14,22,15823,UTN1,,\n", capsys)
    assert code == 1 and "row 2: auth_start: is required" in err


def test_unknown_columns_are_named_and_ignored(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = "Order_ID, Payer ,code,patient_name\nA,medicare,15823,Jane Roe\n"
    code, rows, err = batch(tmp_path, text, capsys)
    assert code == 0 and len(rows) == 1
    assert "ignoring unknown column(s) patient_name" in err and "Jane" not in err


@pytest.mark.parametrize("text, suffix, message", [
    ("order_id,code\nA,15823\n", ".csv", "missing column(s) payer"),
    ("", ".csv", "the file is empty"),
    ("{}", ".txt", "unknown format"),
])
def test_unusable_files_are_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                         text: str, suffix: str, message: str) -> None:
    code, rows, err = batch(tmp_path, text, capsys, suffix=suffix)
    assert code == 2 and rows == []
    assert message in err


def test_jsonl_in_and_out_carries_the_full_v1_decisions(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                        bundled: engine.RuleSet) -> None:
    request = {"payer": "medicare", "date_of_service": "2024-03-14", "request_id": "visit-7",
               "services": [{"code": "64612"}, {"code": "J0585", "units": 100}]}
    lines = [json.dumps(request), "", "{not json", json.dumps({**request, "payer": 7}), "[]",
             json.dumps({"payer": "medicare", "date_of_service": "2024-03-14", "services": [{"code": "15823"}]})]
    code, records, err = batch(tmp_path, "\n".join(lines) + "\n", capsys, suffix=".jsonl", out="out.jsonl")
    assert code == 1
    expected = bundled.evaluate(request)["decisions"]
    assert [{k: r[k] for k in expected[0]} for r in records[:2]] == expected
    assert [(r["row"], r["order_id"], r["line"]) for r in records] == [(1, "visit-7", 1), (1, "visit-7", 2),
                                                                       (6, "line 6", 1)]
    assert records[0]["pa_needed"] == "conditional" and records[0]["info_needed"] == ["place_of_service"]
    assert "row 3: invalid JSON at column 2" in err
    assert "row 4: payer: must be a non-empty string" in err
    assert "row 5: must be a JSON object (a v1 request)" in err


def test_csv_in_jsonl_out(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, records, _ = batch(tmp_path, csv_text("A,medicare,2024-03-14,22,,,15823,,1"), capsys, out="out.jsonl")
    assert records[0]["documentation"][0].keys() >= {"id", "text", "kind"}
    assert records[0]["policies"][0]["url"].startswith("https://")


def test_summary_counts_pa_lines_by_payer_and_policy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = csv_text("A,medicare,2024-03-14,22,,,15823,,1", "B,medicare,2024-03-14,22,,,15830,,1",
                    "C,alabama-medicaid,2024-06-03,11,,,64490,,1", "D,medicare,2024-03-14,22,,,15822,,1")
    _, _, err = batch(tmp_path, text, capsys)
    assert "4 service line(s) in 4 order(s) answered; 4 need prior authorization" in err
    by_payer = err.split("by payer:\n")[1].split("needing")[0]
    assert by_payer.split() == ["medicare", "3", "alabama-medicaid", "1"]
    by_policy = err.split("by policy:\n")[1].split()
    assert by_policy[:2] == ["medicare-opd-blepharoplasty", "2"]
    assert set(by_policy) >= {"medicare-opd-panniculectomy", "alabama-medicaid-facet-joint-interventions"}


def test_regression_a_policy_is_counted_only_on_lines_where_it_decided_pa_was_needed(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # at POS 22 the ASC demonstration answers no-auth and the OPD program requires PA; at POS 24
    # the other way round: each line names both policies, each counts only where it required PA
    header = "order_id,payer,date_of_service,place_of_service,state,code"
    text = "\n".join([header, "O,medicare,2026-03-02,22,NY,15823", "P,medicare,2026-03-02,22,NY,67904",
                      "A,medicare,2026-03-02,24,CA,15823"]) + "\n"
    code, rows, err = batch(tmp_path, text, capsys)
    assert code == 0 and [r["pa_needed"] for r in rows] == ["auth-needed"] * 3
    assert all(set(r["policies"].split("; ")) == {"medicare-opd-blepharoplasty",
                                                  "medicare-asc-prior-authorization-demonstration"} for r in rows)
    by_policy = err.split("by policy:\n")[1].split()
    assert by_policy == ["medicare-opd-blepharoplasty", "2", "medicare-asc-prior-authorization-demonstration", "1"]


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_on_a_terminal_and_nothing_when_piped(tmp_path: Path) -> None:
    screen = _Terminal()
    with Progress(4, screen, interval=0) as bar:
        bar.advance(1)
        bar.advance(3)
    assert "[" + "#" * 8 in screen.getvalue() and "1/4 lines" in screen.getvalue()
    assert "4/4 lines 100%" in screen.getvalue() and screen.getvalue().endswith("\r\033[K")
    assert re.search(r"1/4 lines  25% [\d,]+ lines/s, \d+m\d\ds left", screen.getvalue())
    assert "0m00s left" in screen.getvalue()  # the last draw: nothing left
    pipe = io.StringIO()
    with Progress(4, pipe, interval=0) as bar:
        bar.advance(4)
    assert pipe.getvalue() == ""


def test_batch_draws_progress_only_on_a_terminal(tmp_path: Path, bundled: engine.RuleSet) -> None:
    source = tmp_path / "orders.csv"
    source.write_text(csv_text("A,medicare,2024-03-14,22,,,15823,,1"), encoding="utf-8")
    screen, pipe = _Terminal(), io.StringIO()
    run(bundled, source, tmp_path / "a.csv", screen)
    run(bundled, source, tmp_path / "b.csv", pipe)
    assert "1/1 lines" in screen.getvalue()
    assert "\r" not in pipe.getvalue() and "1/1 lines" not in pipe.getvalue()


# Issue 24, item 10: CSV formula injection ---------------------------------------------------------

FORMULAS = ["=HYPERLINK(\"https://evil.example\",\"x\")", "+1+cmd|' /C calc'!A0", "-2+3", "@SUM(1+1)",
            "\t=1+1", "\r=1+1"]


def test_regression_ids_starting_a_formula_are_written_raw_to_csv(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(["order_id", "payer", "date_of_service", "place_of_service", "code", "auth_id", "auth_start",
                     "auth_end"])
    writer.writerows([formula, "medicare", "2024-03-14", "22", "15823", formula, "2024-03-01", "2024-06-28"]
                     for formula in FORMULAS[:4])
    code, rows, _ = batch(tmp_path, text.getvalue(), capsys)
    assert code == 0
    # a cell a spreadsheet would read as a formula starts with a quote; the rest of it is untouched
    assert [(r["order_id"], r["authorization"]) for r in rows] == [("'" + f, "'" + f) for f in FORMULAS[:4]]


def test_jsonl_ids_with_a_leading_tab_or_return_are_neutralized_in_csv_but_kept_in_jsonl(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = "".join(json.dumps({"payer": "medicare", "date_of_service": "2024-03-14", "request_id": formula,
                                "services": [{"code": "99213"}]}) + "\n" for formula in FORMULAS)
    _, rows, _ = batch(tmp_path, lines, capsys, suffix=".jsonl")
    assert [r["order_id"] for r in rows] == ["'" + f for f in FORMULAS]
    _, records, _ = batch(tmp_path, lines, capsys, suffix=".jsonl", out="out.jsonl")
    assert [r["order_id"] for r in records] == FORMULAS  # JSON holds text, never a formula


def test_cells_that_only_contain_formula_characters_are_left_alone(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    _, rows, _ = batch(tmp_path, csv_text("A=1,medicare,2024-03-14,22,,,15823,,1", "'=2,medicare,2024-03-14,22,,,15823,,1"),
                       capsys)
    assert [r["order_id"] for r in rows] == ["A=1", "'=2"]
    assert rows[0]["row"] == "2" and rows[0]["line"] == "1"


def test_a_return_inside_a_cell_is_quoted_so_it_cannot_start_a_row(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    request = {"payer": "medicare", "date_of_service": "2024-03-14", "services": [{"code": "99213"}]}
    lines = "".join(json.dumps({**request, "request_id": rid}) + "\n" for rid in ("a\r=1+1", "b\n@x", "c"))
    _, rows, _ = batch(tmp_path, lines, capsys, suffix=".jsonl")
    assert [r["order_id"] for r in rows] == ["a\r=1+1", "b\n@x", "c"]
    assert b'"a\r=1+1"' in (tmp_path / "out.csv").read_bytes()


# Issue 24, item 15: worklists past a limit are refused with their row, never a traceback -----------

def test_regression_a_200_kb_csv_cell_ended_in_a_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = csv_text("A,medicare,2024-03-14,22,,,15823,,1", "B,medicare,2024-03-14,22,,," + "9" * 200_000 + ",,1")
    code, rows, err = batch(tmp_path, text, capsys)
    assert (code, rows) == (2, []) and not (tmp_path / "out.csv").exists()
    assert "covreq batch: orders.csv: row 3: a cell is longer than the limit of 131072 characters" in err
    assert "9999" not in err and "Traceback" not in err


def test_a_long_cell_past_the_csv_modules_own_limit_is_named_with_its_column(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("engine.worklists.worklist.MAX_CELL_CHARS", 1_000)
    code, _, err = batch(tmp_path, csv_text("A,medicare,2024-03-14,22,,," + "9" * 1_001 + ",,1"), capsys)
    assert code == 2 and "orders.csv: row 2, column code: a cell is longer than the limit of 1000 characters" in err


def test_a_jsonl_number_too_long_for_python_rejects_its_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    line = '{"payer": "medicare", "services": [{"code": "99213", "units": 1' + "0" * 5_000 + "}]}"
    code, rows, err = batch(tmp_path, line + "\n", capsys, suffix=".jsonl")
    assert (code, rows) == (1, []) and "orders.jsonl row 1: invalid JSON: a number of more than 4300 digits" in err


def test_regression_a_jsonl_line_nested_100000_deep_ended_in_a_traceback(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fine = json.dumps({"payer": "medicare", "services": [{"code": "99213"}]})
    code, rows, err = batch(tmp_path, "\n".join([fine, "", "[" * 100_000 + "]" * 100_000, fine]) + "\n", capsys,
                            suffix=".jsonl")
    assert (code, rows) == (2, []) and not (tmp_path / "out.csv").exists()
    assert "covreq batch: orders.jsonl: row 3: JSON nested too deeply" in err


def test_revenue_code_provider_type_and_trip_columns_reach_the_rules(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = ("order_id,payer,date_of_service,type_of_bill,state,provider_type,code,revenue_code,"
            "round_trips_in_10_days,round_trip_weeks\n"
            "A,medicare,2026-03-02,131,TX,,22554,0360,,\n"
            "B,medicare,2026-03-02,131,TX,,22554,450,,\n"
            "C,medicare,2026-03-02,131,TX,VA,22554,,,\n"
            "D,medicare,2026-03-02,,TX,,A0428,,3,\n"
            "E,medicare,2026-03-02,,TX,,A0428,,2,1\n")
    code, rows, _ = batch(tmp_path, text, capsys)
    assert code == 0
    assert [r["pa_needed"] for r in rows] == ["auth-needed", "no-auth", "no-auth", "auth-needed", "no-auth"]
    code, _, err = batch(tmp_path, text.replace(",3,\n", ",three,\n"), capsys)
    assert code == 1 and "round_trips_in_10_days: 'three' is not a number" in err
