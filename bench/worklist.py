"""Synthetic batch worklists (CSV, or a Parquet dataset of several files) over a rule tree: orders of one to three service lines whose rows are
not always adjacent, with every fact a real export carries and a few bad rows. Seeded: a size always
gives the same file."""
from __future__ import annotations

import csv
import datetime as dt
import random
from pathlib import Path

import engine

COLUMNS = ("order_id", "payer", "plan", "date_of_service", "place_of_service", "birth_date", "sex", "diagnoses",
           "code", "modifiers", "units")
_PLACES = ("11", "19", "22", "24", "")
_DIAGNOSES = ("H02.831", "H53.40", "G24.5", "M47.816", "I83.10", "M17.11", "G89.29", "")
_UNLISTED = ("99213", "70551", "J3490")
#: One row in this many carries a malformed code (its order is rejected, as a real batch sees).
BAD_ROW_EVERY = 500
#: Rows of an order are shuffled within windows of this many rows (orders spread over the file).
_WINDOW = 16


def codes_by_payer(rules: engine.RuleSet) -> dict[str, list[str]]:
    """Every code the rule set lists exactly, by payer, sorted."""
    found: dict[str, set[str]] = {}
    for policy in rules.policy_versions():
        for group in policy.code_groups:
            found.setdefault(policy.payer, set()).update(group.codes.exact)
    return {payer: sorted(codes) for payer, codes in sorted(found.items())}


def write_worklist(rules_path: Path, lines: int, target: Path, seed: int = 17) -> int:
    """Write a CSV worklist of ``lines`` service lines over the rules at ``rules_path``; return its orders."""
    rows, orders = worklist_rows(rules_path, lines, seed)
    with target.open("w", encoding="utf-8", newline="") as stream:
        writer = csv.writer(stream, lineterminator="\n")
        writer.writerow(COLUMNS)
        writer.writerows(rows)
    return orders


def write_dataset(rules_path: Path, lines: int, folder: Path, files: int = 6, seed: int = 17) -> int:
    """Write the worklist of :func:`write_worklist` as a Parquet dataset of ``files`` files of about
    equal size (text columns; an order's rows may straddle two files) into ``folder``; return its orders."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows, orders = worklist_rows(rules_path, lines, seed)
    folder.mkdir(parents=True, exist_ok=True)
    size = -(-len(rows) // files)
    for n in range(files):
        part = rows[n * size:(n + 1) * size]
        pq.write_table(pa.table({name: [row[i] for row in part] for i, name in enumerate(COLUMNS)}),
                       folder / f"claims-{n:02d}.parquet")
    return orders


def worklist_rows(rules_path: Path, lines: int, seed: int = 17) -> tuple[list[list[str]], int]:
    """The rows (cells of :data:`COLUMNS`) of a seeded worklist of ``lines`` lines, and its number of orders."""
    chooser = random.Random(seed)
    codes = codes_by_payer(engine.load(rules_path))
    payers = list(codes)
    rows: list[list[str]] = []
    orders = 0
    while len(rows) < lines:
        orders += 1
        payer = chooser.choice(payers)
        day = dt.date(2024, 1, 1) + dt.timedelta(days=chooser.randrange(366))
        born = dt.date(1930, 1, 1) + dt.timedelta(days=chooser.randrange(365 * 70))
        facts = [f"W{orders:08d}", payer, "", day.isoformat(), chooser.choice(_PLACES), born.isoformat(),
                 chooser.choice(("female", "male")), chooser.choice(_DIAGNOSES)]
        for _ in range(min(chooser.choice((1, 1, 2, 3)), lines - len(rows))):
            code = chooser.choice(codes[payer]) if chooser.random() < 0.9 else chooser.choice(_UNLISTED)
            if len(rows) % BAD_ROW_EVERY == BAD_ROW_EVERY - 1:
                code = code[:-1]
            rows.append([*facts, code, chooser.choice(("", "", "50", "RT")), chooser.choice(("1", "1", "2"))])
    for start in range(0, len(rows), _WINDOW):
        window = rows[start:start + _WINDOW]
        chooser.shuffle(window)
        rows[start:start + _WINDOW] = window
    return rows, orders
