"""The batch worklist: answer every order of a worklist, write one row per service line, summarize.

``covreq batch`` calls :func:`run`; columns and exit codes are documented in docs/lookup.md.
"""
from __future__ import annotations

import csv
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, TextIO

from .errors import RequestError
from .progress import Progress
from .ruleset import RuleSet
from .worklist import Order, Rejection, WorklistError, read_csv, read_jsonl

#: Columns of a CSV answer, one row per service line.
OUTPUT_COLUMNS = ("row", "order_id", "line", "payer", "code", "system", "pa_needed", "covered",
                  "documentation", "info_needed", "authorization", "policies", "policy_urls", "reasons",
                  "as_of", "ruleset")
#: Joins several ids or links in one CSV cell.
LIST_SEPARATOR = "; "
#: Joins several reasons (sentences that may hold ";") in one CSV cell.
REASON_SEPARATOR = " | "
_JSONL = (".jsonl", ".ndjson")
Reader = Callable[[TextIO], "tuple[list[Order], list[Rejection], list[str]]"]
Writer = Callable[["Iterable[AnsweredLine]", TextIO], None]


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
    """What a batch found: answers by value, lines needing PA by payer and by policy, rejected rows."""

    orders: int = 0
    lines: int = 0
    answers: Counter[str] = field(default_factory=Counter)
    pa_by_payer: Counter[str] = field(default_factory=Counter)
    pa_by_policy: Counter[str] = field(default_factory=Counter)
    rejected: list[Rejection] = field(default_factory=list)

    def count(self, answer: AnsweredLine) -> None:
        """Add one answered line."""
        self.lines += 1
        pa_needed = answer.decision["pa_needed"]
        self.answers[pa_needed] += 1
        if pa_needed == "auth-needed":
            self.pa_by_payer[answer.payer] += 1
            self.pa_by_policy.update(p["id"] for p in answer.decision["policies"])

    def render(self) -> str:
        """The summary as printed after a batch."""
        parts = [f"{self.lines} service line(s) in {self.orders} order(s) answered; "
                 f"{self.answers['auth-needed']} need prior authorization, "
                 f"{self.answers['conditional']} conditional, {self.answers['satisfied']} satisfied, "
                 f"{self.answers['no-auth']} no-auth; {len(self.rejected)} input row(s) rejected"]
        for title, counts in (("payer", self.pa_by_payer), ("policy", self.pa_by_policy)):
            if counts:
                parts.append(f"needing prior authorization, by {title}:")
                width = max(len(key) for key in counts)
                parts += [f"  {key:<{width}}  {n}" for key, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]
        return "\n".join(parts) + "\n"


def _csv_row(answer: AnsweredLine) -> dict[str, Any]:
    decision = answer.decision
    return {"row": answer.row, "order_id": answer.order_id, "line": answer.line, "payer": answer.payer,
            "code": decision["code"], "system": decision["system"], "pa_needed": decision["pa_needed"],
            "covered": decision["covered"],
            "documentation": LIST_SEPARATOR.join(d["id"] for d in decision["documentation"]),
            "info_needed": LIST_SEPARATOR.join(decision["info_needed"]),
            "authorization": decision.get("authorization", ""),
            "policies": LIST_SEPARATOR.join(p["id"] for p in decision["policies"]),
            "policy_urls": LIST_SEPARATOR.join(p["url"] for p in decision["policies"]),
            "reasons": REASON_SEPARATOR.join(decision["reasons"]),
            "as_of": answer.as_of, "ruleset": answer.ruleset}


def write_csv(answers: Iterable[AnsweredLine], stream: TextIO) -> None:
    """One CSV row per service line, columns :data:`OUTPUT_COLUMNS`."""
    writer = csv.DictWriter(stream, OUTPUT_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(_csv_row(answer) for answer in answers)


def write_jsonl(answers: Iterable[AnsweredLine], stream: TextIO) -> None:
    """One JSON object per service line: where it came from, then the full v1 decision."""
    for answer in answers:
        record = {"row": answer.row, "order_id": answer.order_id, "line": answer.line, "payer": answer.payer,
                  "as_of": answer.as_of, "ruleset": answer.ruleset, **answer.decision}
        stream.write(json.dumps(record) + "\n")


def _formats(path: Path) -> tuple[Reader, Writer]:
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return read_csv, write_csv
    if suffix in _JSONL:
        return read_jsonl, write_jsonl
    raise WorklistError(f"{path}: unknown format; name the file *.csv or *.jsonl")


def answer_orders(rules: RuleSet, orders: list[Order], summary: Summary, progress: Progress) -> list[AnsweredLine]:
    """Evaluate each order as one request; rejected orders go to ``summary.rejected``."""
    answers: list[AnsweredLine] = []
    for order in orders:
        try:
            response = rules.evaluate(order.body)
        except RequestError as err:
            summary.rejected += order.reject(err)
        else:
            summary.orders += 1
            for line, (row, decision) in enumerate(zip(order.rows, response["decisions"]), start=1):
                answers.append(AnsweredLine(row, order.order_id, line, order.body["payer"], response["as_of"],
                                            response["ruleset"], decision))
                summary.count(answers[-1])
        progress.advance(len(order.rows))
    return sorted(answers, key=lambda a: (a.row, a.line))


def run(rules: RuleSet, source: Path, target: Path, report: TextIO) -> Summary:
    """Answer the worklist ``source`` into ``target``; rejections, progress and summary go to ``report``.

    Raises :class:`WorklistError` when a file cannot be used at all (nothing is written then).
    """
    read, _ = _formats(source)
    _, write = _formats(target)
    try:
        with source.open(encoding="utf-8-sig", newline="") as stream:
            orders, rejected, ignored = read(stream)
    except (OSError, UnicodeDecodeError) as err:
        raise WorklistError(f"cannot read {source}: {err}") from None
    if ignored:
        report.write(f"covreq batch: ignoring unknown column(s) {', '.join(ignored)}\n")
    summary = Summary(rejected=rejected)
    with Progress(sum(len(order.rows) for order in orders), report) as progress:
        answers = answer_orders(rules, orders, summary, progress)
    try:
        with target.open("w", encoding="utf-8", newline="") as stream:
            write(answers, stream)
    except OSError as err:
        raise WorklistError(f"cannot write {target}: {err}") from None
    for rejection in sorted(summary.rejected):
        report.write(f"covreq batch: {source.name} row {rejection.row}: {rejection.reason}; skipped\n")
    report.write(summary.render())
    return summary
