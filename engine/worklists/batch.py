"""The batch worklist: answer every order of a worklist, write one row per service line, summarize.

``covreq batch`` calls :func:`run`; columns and exit codes are documented in docs/lookup.md. Orders are
answered by a back-end: :func:`answer_orders` in this process, or ``dask_batch`` on a Dask cluster.
"""
from __future__ import annotations

import csv
import datetime as dt
import functools
import json
import operator
import posixpath
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Protocol, Sequence, TextIO

from engine.errors import RequestError
from engine.evaluation.evaluate import run_policy
from engine.worklists.parquet import GLOB_CHARACTERS, is_dataset, read_parquet, write_parquet
from engine.policy import AUTH_NEEDED
from engine.worklists.progress import Progress
from engine.evaluation.request import parse_request
from engine.evaluation.ruleset import RuleSet
from engine.worklists.worklist import Order, Rejection, WorklistError, read_csv, read_jsonl

#: Columns of a CSV answer, one row per service line.
OUTPUT_COLUMNS = ("row", "order_id", "line", "payer", "code", "system", "pa_needed", "covered",
                  "documentation", "info_needed", "authorization", "policies", "policy_urls", "reasons",
                  "as_of", "ruleset")
#: Joins several ids or links in one CSV cell.
LIST_SEPARATOR = "; "
#: Joins several reasons (sentences that may hold ";") in one CSV cell.
REASON_SEPARATOR = " | "
#: First characters that make a spreadsheet read a CSV cell as a formula (OWASP, "CSV Injection").
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
#: What reading a worklist gives: its orders, the rows rejected on the way, notes on how it was read.
Read = tuple[list[Order], list[Rejection], list[str]]
#: One answered line, rendered for the output format, with its input row and line number.
Rendered = tuple[int, int, Any]


@dataclass(frozen=True)
class AnsweredLine:
    """The decision for one service line and where it came from."""

    row: int
    order_id: str
    line: int
    payer: str
    as_of: str
    ruleset: str
    decision: dict[str, Any]


@dataclass
class Summary:
    """What a batch found: answers by value, lines needing PA by payer and by policy, rejected rows,
    and the partitions of a dataset that failed (each a message saying which and why)."""

    orders: int = 0
    lines: int = 0
    answers: Counter[str] = field(default_factory=Counter)
    pa_by_payer: Counter[str] = field(default_factory=Counter)
    pa_by_policy: Counter[str] = field(default_factory=Counter)
    rejected: list[Rejection] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    def count(self, answer: AnsweredLine, requiring: Iterable[str] | None = None) -> None:
        """Add one answered line; ``requiring`` names the policies that decided PA was needed, when
        the decision names others too (by default, every policy it names)."""
        self.lines += 1
        pa_needed = answer.decision["pa_needed"]
        self.answers[pa_needed] += 1
        if pa_needed == AUTH_NEEDED:
            self.pa_by_payer[answer.payer] += 1
            self.pa_by_policy.update(requiring if requiring is not None else
                                     (p["id"] for p in answer.decision["policies"]))

    def merge(self, other: Summary) -> None:
        """Add the counts of a summary of other orders (a partition answered elsewhere)."""
        self.orders += other.orders
        self.lines += other.lines
        self.answers.update(other.answers)
        self.pa_by_payer.update(other.pa_by_payer)
        self.pa_by_policy.update(other.pa_by_policy)
        self.rejected += other.rejected
        self.failed += other.failed

    def render(self) -> str:
        """The summary as printed after a batch."""
        parts = [f"{self.lines} service line(s) in {self.orders} order(s) answered; "
                 f"{self.answers['auth-needed']} need prior authorization, "
                 f"{self.answers['conditional']} conditional, {self.answers['satisfied']} satisfied, "
                 f"{self.answers['no-auth']} no-auth"
                 + (f", {self.answers['unknown']} unknown" if self.answers['unknown'] else "")
                 + f"; {len(self.rejected)} input row(s) rejected"
                 + (f"; {len(self.failed)} partition(s) failed, their lines not written" if self.failed else "")]
        for title, counts in (("payer", self.pa_by_payer), ("policy", self.pa_by_policy)):
            if counts:
                parts.append(f"needing prior authorization, by {title}:")
                width = max(len(key) for key in counts)
                parts += [f"  {key:<{width}}  {n}" for key, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]
        return "\n".join(parts) + "\n"


def _csv_row(answer: AnsweredLine) -> tuple[Any, ...]:
    """The line as a row of :data:`OUTPUT_COLUMNS` (CSV and Parquet)."""
    decision = answer.decision
    return (answer.row, answer.order_id, answer.line, answer.payer, decision["code"], decision["system"],
            decision["pa_needed"], decision["covered"],
            LIST_SEPARATOR.join(d["id"] for d in decision["documentation"]),
            LIST_SEPARATOR.join(decision["info_needed"]), decision.get("authorization", ""),
            LIST_SEPARATOR.join(p["id"] for p in decision["policies"]),
            LIST_SEPARATOR.join(p["url"] for p in decision["policies"]),
            REASON_SEPARATOR.join(decision["reasons"]), answer.as_of, answer.ruleset)


def _json_line(answer: AnsweredLine) -> str:
    """The line as one JSON object: where it came from, then the full v1 decision."""
    record = {"row": answer.row, "order_id": answer.order_id, "line": answer.line, "payer": answer.payer,
              "as_of": answer.as_of, "ruleset": answer.ruleset, **answer.decision}
    return json.dumps(record) + "\n"


def spreadsheet_text(cell: Any) -> Any:
    """A CSV cell as a spreadsheet shows it, never as a formula: text starting with one of
    :data:`FORMULA_STARTS` gets a single quote in front (order and authorization ids come from the
    worklist, so they may be written to run in the coordinator's spreadsheet); numbers are kept."""
    return "'" + cell if isinstance(cell, str) and cell.startswith(FORMULA_STARTS) else cell


def _write_csv(rows: Iterable[Sequence[Any]], stream: TextIO) -> None:
    writer = csv.writer(stream, lineterminator="\n")
    # the "\n" terminator leaves a cell holding "\r" unquoted, and a spreadsheet starts a row there
    quoted = csv.writer(stream, lineterminator="\n", quoting=csv.QUOTE_ALL)
    writer.writerow(OUTPUT_COLUMNS)
    for row in rows:
        cells = [spreadsheet_text(cell) for cell in row]
        (quoted if any(isinstance(cell, str) and "\r" in cell for cell in cells) else writer).writerow(cells)


def _write_lines(lines: Iterable[str], stream: TextIO) -> None:
    stream.writelines(lines)


def _text_reader(read: Callable[[TextIO], Read]) -> Callable[[Path | str], Read]:
    def reader(name: Path | str) -> Read:
        path = Path(name)
        try:
            with path.open(encoding="utf-8-sig", newline="") as stream:
                return read(stream)
        except (OSError, UnicodeDecodeError) as err:
            raise WorklistError(f"cannot read {path}: {err}") from None
        except WorklistError as err:
            raise WorklistError(f"{path.name}: {err}") from None
    return reader


def _text_writer(write: Callable[[Iterable[Any], TextIO], None]) -> Callable[[Iterable[Any], Path | str], None]:
    def writer(records: Iterable[Any], name: Path | str) -> None:
        path = Path(name)
        try:
            with path.open("w", encoding="utf-8", newline="") as stream:
                write(records, stream)
        except OSError as err:
            raise WorklistError(f"cannot write {path}: {err}") from None
    return writer


@dataclass(frozen=True)
class Format:
    """How a worklist file is read, how one answered line is rendered for it, and how the rendered
    lines are written."""

    read: Callable[[Path | str], Read]
    render: Callable[[AnsweredLine], Any]
    write: Callable[[Iterable[Any], Path | str], None]


_CSV = Format(_text_reader(read_csv), _csv_row, _text_writer(_write_csv))
_JSONL = Format(_text_reader(read_jsonl), _json_line, _text_writer(_write_lines))
_PARQUET = Format(read_parquet, _csv_row,
                  functools.partial(write_parquet, columns=OUTPUT_COLUMNS, integers=frozenset({"row", "line"})))
#: Worklist formats by file name suffix.
FORMATS = {".csv": _CSV, ".jsonl": _JSONL, ".ndjson": _JSONL, ".parquet": _PARQUET}


def format_of(name: Path | str) -> Format:
    """The format a file's name asks for (a Parquet dataset: a folder, a name ending in ``/``, or a
    glob); :class:`WorklistError` for an unknown one."""
    if is_dataset(str(name)):
        return _PARQUET
    try:
        return FORMATS[posixpath.splitext(str(name))[1].lower()]
    except KeyError:
        raise WorklistError(f"{name}: unknown format; name the file *.csv, *.jsonl or *.parquet, or give a "
                            "Parquet dataset (a folder, or a glob of *.parquet files)") from None


#: A back-end answers orders: (rules, orders, render, summary, progress) -> rendered lines, in any order.
Backend = Callable[[RuleSet, list[Order], Callable[[AnsweredLine], Any], Summary, Progress], list[Rendered]]


class DatasetBackend(Protocol):
    """A back-end that can also answer a Parquet dataset into a Parquet dataset by itself, reading and
    writing where it answers (``dask_batch``): :func:`run` hands it such a job whole."""

    def answer_dataset(self, rules: RuleSet, source: str, target: str, report: TextIO) -> Summary:
        """Answer the dataset ``source`` into the dataset folder ``target``; progress to ``report``."""


def requiring_policies(rules: RuleSet, body: dict[str, Any], as_of: str) -> list[list[str]]:
    """Per line of an answered request, the ids of the policies whose own answer is auth-needed: a
    decision names every policy that was consulted, one of which may have answered no-auth."""
    request = parse_request(body, dt.date.fromisoformat(as_of))
    return [[policy.id for policy in rules.select(request.payer, request.plan, line, request.as_of)
             if run_policy(policy, line.facts).pa_needed == AUTH_NEEDED] for line in request.lines]


def answer_orders(rules: RuleSet, orders: Iterable[Order], render: Callable[[AnsweredLine], Any],
                  summary: Summary, progress: Progress | None = None) -> list[Rendered]:
    """Evaluate each order as one request and render each of its lines, as ``(row, line, record)``;
    rejected orders go to ``summary.rejected``. The back-end of a batch on one process."""
    answered: list[Rendered] = []
    for order in orders:
        try:
            response = rules.evaluate(order.body)
        except RequestError as err:
            summary.rejected += order.reject(err)
        else:
            summary.orders += 1
            requiring: list[list[str]] | None = None
            for line, (row, decision) in enumerate(zip(order.rows, response["decisions"]), start=1):
                answer = AnsweredLine(row, order.order_id, line, order.body["payer"], response["as_of"],
                                      response["ruleset"], decision)
                if decision["pa_needed"] == AUTH_NEEDED and len(decision["policies"]) > 1:
                    # rare (programs that overlap): the policies' own answers, once per order
                    requiring = requiring or requiring_policies(rules, order.body, response["as_of"])
                    summary.count(answer, requiring[line - 1])
                else:
                    summary.count(answer)
                answered.append((row, line, render(answer)))
        if progress:
            progress.advance(len(order.rows))
    return answered


def run(rules: RuleSet, source: Path | str, target: Path | str, report: TextIO,
        backend: Backend = answer_orders) -> Summary:
    """Answer the worklist ``source`` into ``target`` on ``backend``; rejections, progress and summary
    go to ``report``. Output rows follow the input rows, whichever back-end answered them; a back-end
    with ``answer_dataset`` (:class:`DatasetBackend`) answers a Parquet dataset into a dataset folder
    itself, each part file's rows in input order.

    Raises :class:`WorklistError` when a file cannot be used at all (nothing is written then).
    """
    reading, writing = format_of(source), format_of(target)
    datasets: DatasetBackend | None = backend if hasattr(backend, "answer_dataset") else None  # type: ignore[assignment]
    if datasets is not None and reading is writing is _PARQUET and is_dataset(str(target)):
        summary = datasets.answer_dataset(rules, str(source), str(target), report)
    else:
        orders, rejected, notes = reading.read(source)
        for note in notes:
            report.write(f"covreq batch: {note}\n")
        summary = Summary(rejected=rejected)
        with Progress(sum(len(order.rows) for order in orders), report) as progress:
            answered = backend(rules, orders, writing.render, summary, progress)
        answered.sort(key=operator.itemgetter(0, 1))
        writing.write((record for _, _, record in answered), target)
    name = posixpath.basename(str(source).rstrip("/"))
    if GLOB_CHARACTERS & set(name):
        name = posixpath.join(posixpath.basename(posixpath.dirname(str(source))), name)
    for rejection in sorted(summary.rejected):
        report.write(f"covreq batch: {name} row {rejection.row}: {rejection.reason}; skipped\n")
    for failure in summary.failed:
        report.write(f"covreq batch: {failure}\n")
    report.write(summary.render())
    return summary
