"""Read a worklist of scheduled orders (CSV, JSON Lines, or any table of cells) into v1 requests, one per order.

The columns are documented in docs/lookup.md. Values are never echoed for patient columns, so a
rejection report can be shown or kept without exposing patient data.
"""
from __future__ import annotations

import csv
import json
import re
import sys
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, TextIO

from engine.errors import CovreqError, RequestError

#: Longest cell accepted, in characters: the csv module's own limit (``csv.field_size_limit()``),
#: applied to every format's cells. A longer cell makes the whole worklist unusable.
MAX_CELL_CHARS = 131_072
#: Columns a CSV worklist must have; without ``order_id`` each row is an order of its own.
REQUIRED = ("payer", "code")
#: Columns about the whole order: its rows repeat the same value or leave the cell blank.
ORDER_COLUMNS = ("payer", "plan", "date_of_service", "place_of_service", "type_of_bill", "state",
                 "birth_date", "sex", "diagnoses", "npi", "specialty", "network", "provider_type", "exemptions",
                 "order_complete")
#: Columns about one service line.
LINE_COLUMNS = ("code", "system", "modifiers", "units", "stage", "trial_place_of_service", "revenue_code",
                "round_trips_in_10_days", "round_trip_weeks", "auth_id", "auth_start", "auth_end")
#: Columns whose values are patient data: named in reports, never shown.
PATIENT_COLUMNS = frozenset({"birth_date", "sex", "diagnoses"})
_KNOWN = frozenset({"order_id", *ORDER_COLUMNS, *LINE_COLUMNS})
_LISTS = frozenset({"diagnoses", "exemptions", "modifiers"})
#: Line columns read as numbers.
_NUMBERS = ("units", "round_trips_in_10_days", "round_trip_weeks")
_SEPARATOR = re.compile(r"[;,\s]+")
_V1_COLUMN = {"patient.birth_date": "birth_date", "patient.sex": "sex", "provider.npi": "npi",
              "provider.specialty": "specialty", "provider.network": "network", "provider.type": "provider_type",
              "provider.exemptions": "exemptions"}
_AUTH_COLUMN = {"id": "auth_id", "start": "auth_start", "end": "auth_end", "code": "code"}
#: Spellings of ``order_complete``; any other value is passed on for the v1 contract to refuse.
_FLAGS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
_INDEXED = re.compile(r"(services|authorizations)\[(\d+)\]\.?([\w.]*)")


class WorklistError(CovreqError):
    """The worklist as a whole cannot be read (no header, a required column missing, a row past a limit)."""


@dataclass(frozen=True, order=True)
class Rejection:
    """An input row that was skipped: its number (header = row 1; JSONL: line) and why."""

    row: int
    reason: str


@dataclass
class Order:
    """One order as a v1 request, with the input row of each service line (and authorization)."""

    order_id: str
    body: dict[str, Any]
    rows: list[int]
    auth_rows: list[int] = field(default_factory=list)
    csv: bool = True

    def reject(self, error: RequestError) -> list[Rejection]:
        """Reject every row of the order: the row at fault with the reason, the others with a pointer."""
        row, column = self._blame(error.location)
        message = error.message
        if column in PATIENT_COLUMNS or column.startswith(("patient.", "diagnoses")):
            message = "is not valid (the value is patient data and is not shown)"
        return reject_order(self.rows, row, f"{column}: {message}" if column else message)

    def _blame(self, location: str) -> tuple[int, str]:
        if not self.csv:
            return self.rows[0], location
        indexed = _INDEXED.fullmatch(location)
        if not indexed:
            return self.rows[0], _V1_COLUMN.get(location, location)
        kind, index, column = indexed.groups()
        if kind == "services":
            return self.rows[int(index)], column or "code"
        return self.auth_rows[int(index)], _AUTH_COLUMN.get(column, "auth_id")


def reject_order(rows: list[int], culprit: int, reason: str) -> list[Rejection]:
    """The culprit row with ``reason``, every other row of its order as rejected with it."""
    return [Rejection(row, reason if row == culprit else f"its order was rejected with row {culprit}")
            for row in sorted(set(rows))]


def _values(column: str, text: str) -> frozenset[str] | str:
    """A cell as compared between rows of one order: lists as sets, the rest as written."""
    return frozenset(v.upper() for v in _SEPARATOR.split(text) if v) if column in _LISTS else text


def _units(text: str) -> int | float:
    number = float(text)
    return int(number) if number.is_integer() else number


@dataclass
class _Draft:
    """The rows of one order while the file is read."""

    order_id: str
    facts: dict[str, tuple[str, int]] = field(default_factory=dict)
    lines: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    problem: tuple[int, str] | None = None

    def add(self, row: int, cells: dict[str, str]) -> None:
        self.lines.append((row, cells))
        if self.problem:
            return
        for column in ORDER_COLUMNS:
            if column not in cells:
                continue
            if column == "place_of_service" and len(cells[column]) == 1 and cells[column].isdigit():
                cells[column] = "0" + cells[column]  # a spreadsheet dropped the leading zero
            seen = self.facts.setdefault(column, (cells[column], row))
            if _values(column, seen[0]) != _values(column, cells[column]):
                self.problem = (row, f"{column}: differs from row {seen[1]} of the same order")
                return
        if "code" not in cells:
            self.problem = (row, "code: is required")
            return
        for column in _NUMBERS:
            try:
                if column in cells:
                    _units(cells[column])
            except ValueError:
                self.problem = (row, f"{column}: '{cells[column]}' is not a number")
                return

    def build(self) -> Order | list[Rejection]:
        rows = [row for row, _ in self.lines]
        if self.problem:
            return reject_order(rows, *self.problem)
        facts = {column: value for column, (value, _) in self.facts.items()}
        body: dict[str, Any] = {"payer": facts.get("payer")}
        body.update({k: facts[k] for k in ("plan", "date_of_service", "place_of_service", "type_of_bill", "state")
                     if k in facts})
        patient = {k: facts[k] for k in ("birth_date", "sex") if k in facts}
        if patient:
            body["patient"] = patient
        if "diagnoses" in facts:
            body["diagnoses"] = sorted(_values("diagnoses", facts["diagnoses"]))
        provider: dict[str, Any] = {k: facts[k] for k in ("npi", "specialty", "network") if k in facts}
        if "provider_type" in facts:
            provider["type"] = facts["provider_type"]
        if "exemptions" in facts:
            provider["exemptions"] = [e.lower() for e in sorted(_values("exemptions", facts["exemptions"]))]
        if provider:
            body["provider"] = provider
        if "order_complete" in facts:
            body["order_complete"] = _FLAGS.get(facts["order_complete"].lower(), facts["order_complete"])
        body["services"], authorizations, auth_rows = [], [], []
        for row, cells in self.lines:
            service: dict[str, Any] = {"code": cells["code"]}
            service.update({k: cells[k] for k in ("system", "stage", "trial_place_of_service", "revenue_code")
                            if k in cells})
            if "modifiers" in cells:
                service["modifiers"] = sorted(_values("modifiers", cells["modifiers"]))
            service.update({k: _units(cells[k]) for k in _NUMBERS if k in cells})
            body["services"].append(service)
            if any(k in cells for k in ("auth_id", "auth_start", "auth_end")):
                authorizations.append({"code": cells["code"], **{k[5:]: cells[k] for k in ("auth_id", "auth_start",
                                                                                        "auth_end") if k in cells}})
                auth_rows.append(row)
        if authorizations:
            body["authorizations"] = authorizations
        return Order(self.order_id, body, rows, auth_rows)


def read_csv(stream: TextIO) -> tuple[list[Order], list[Rejection], list[str]]:
    """Orders of a CSV worklist, the rows rejected while reading, and notes on how it was read."""
    rows = _csv_rows(csv.reader(stream))
    first = next(rows, None)
    if first is None:
        raise WorklistError("the file is empty; the first row must name the columns")
    return read_rows(first[1], rows)


def _csv_rows(reader: Iterator[list[str]]) -> Iterator[tuple[int, list[str]]]:
    """The rows of a CSV reader, numbered from 1; a row the csv module refuses (a cell past its
    limit, :data:`MAX_CELL_CHARS` unless changed) is a :class:`WorklistError` naming it."""
    row = 0
    try:
        for row, values in enumerate(reader, start=1):
            yield row, values
    except csv.Error as err:
        problem = (f"a cell is longer than the limit of {MAX_CELL_CHARS} characters"
                   if "field larger than field limit" in str(err) else f"not readable as CSV: {err}")
        raise WorklistError(f"row {row + 1}: {problem}") from None


def read_rows(header: list[str], rows: Iterable[tuple[int, list[str]]]) -> tuple[list[Order], list[Rejection], list[str]]:
    """Orders of a table of text cells (one row per service line, numbered), the rows rejected while
    reading, and notes for the user (columns ignored, rows taken as orders of their own): the CSV
    layout, whatever file the table came from."""
    names = [name.strip().lower() for name in header]
    missing = [column for column in REQUIRED if column not in names]
    if missing:
        raise WorklistError(f"missing column(s) {', '.join(missing)}; the header has {', '.join(names)}")
    ignored = [name for name in names if name not in _KNOWN]
    notes = [f"ignoring unknown column(s) {', '.join(ignored)}"] if ignored else []
    grouped = "order_id" in names
    if not grouped:
        notes.append("no order_id column: each row is an order of its own (named 'row N')")
    drafts: dict[str, _Draft] = {}
    rejected: list[Rejection] = []
    for row, values in rows:
        if not any(value.strip() for value in values):
            continue
        if max(map(len, values)) > MAX_CELL_CHARS:
            raise _too_long(row, names, values)
        if len(values) > len(names):
            rejected.append(Rejection(row, f"has {len(values)} cells; the header names {len(names)} columns"))
            continue
        cells = {name: value.strip() for name, value in zip(names, values) if name in _KNOWN and value.strip()}
        if not grouped:
            cells["order_id"] = f"row {row}"
        if "order_id" not in cells:
            rejected.append(Rejection(row, "order_id: is required"))
            continue
        drafts.setdefault(cells["order_id"], _Draft(cells["order_id"])).add(row, cells)
    orders = []
    for draft in drafts.values():
        built = draft.build()
        if isinstance(built, Order):
            orders.append(built)
        else:
            rejected += built
    return orders, rejected, notes


def _too_long(row: int, names: list[str], values: list[str]) -> WorklistError:
    """The error for a row holding a cell past :data:`MAX_CELL_CHARS`, naming its column."""
    index = next(i for i, value in enumerate(values) if len(value) > MAX_CELL_CHARS)
    column = f", column {names[index]}" if index < len(names) else ""
    return WorklistError(f"row {row}{column}: a cell is longer than the limit of {MAX_CELL_CHARS} characters")


def read_jsonl(stream: TextIO) -> tuple[list[Order], list[Rejection], list[str]]:
    """Orders of a JSON Lines worklist (one v1 request per line; ``request_id`` is the order id)."""
    orders: list[Order] = []
    rejected: list[Rejection] = []
    for row, text in enumerate(stream, start=1):
        if not text.strip():
            continue
        try:
            body = json.loads(text)
        except json.JSONDecodeError as err:
            rejected.append(Rejection(row, f"invalid JSON at column {err.colno}: {err.msg}"))
            continue
        except ValueError:  # the only other ValueError: an integer longer than Python converts
            rejected.append(Rejection(row, f"invalid JSON: a number of more than {sys.get_int_max_str_digits()} digits"))
            continue
        except RecursionError:
            raise WorklistError(f"row {row}: JSON nested too deeply for Python's JSON reader "
                                "(about 1,000 levels; a v1 request needs five)") from None
        if not isinstance(body, dict):
            rejected.append(Rejection(row, "must be a JSON object (a v1 request)"))
            continue
        request_id = body.get("request_id")
        services = body.get("services")
        lines = len(services) if isinstance(services, list) and services else 1
        orders.append(Order(request_id if isinstance(request_id, str) and request_id else f"line {row}",
                            body, [row] * lines, csv=False))
    return orders, rejected, []
