"""Load a rule tree: read YAML files, validate them, compile policies, report every problem.

Problems are collected across the whole tree and raised together as one :class:`LoadError`, each
with its file, line, column and a stable code (see docs/authoring.md, "Error codes"). The stages live
beside this module: :mod:`files` (reading), :mod:`schema`, :mod:`drafts` (plan overrides),
:mod:`payers`, :mod:`compiling` and :mod:`vocab` (the values rules may name).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from engine.errors import Problem
from engine.loading.compiling import Shared, check_versions, compile_draft
from engine.loading.drafts import Draft, Kept, extend, policy_draft
from engine.loading.files import PAYER_FILE, file_texts, iter_rule_files, loading, read_source, written_id
from engine.loading.parallel import read_texts
from engine.loading.payers import read_payer
from engine.loading.source import Problems
from engine.loading.vocab import PlansNamed, unknown_values, unlisted_plans
from engine.policy import Location, PayerInfo, Policy


@dataclass
class Tree:
    """Everything read from a rule tree."""

    policies: list[Policy]
    payers: dict[str, PayerInfo]
    digest: str
    files: list[str]
    problems: list[Problem]


@loading()
def read_tree(root: str | Path, workers: int | None = None) -> Tree:
    """Read, validate and compile every file under ``root``; problems are returned, not raised.
    ``workers`` read YAML besides this process (see :func:`engine.loading.parallel.read_texts`; None: one
    for a large tree when a core is spare, 0: none); the result is the same however many there are."""
    root = Path(root)
    problems = Problems()
    if not root.exists():
        problems.add(Location(str(root), 1, 1), "E-io", "no such file or folder")
        return Tree([], {}, "", [], problems)
    digest = hashlib.sha256()
    payers: dict[str, PayerInfo] = {}
    files: list[str] = []
    shared = Shared()
    # Each policy file is compiled as soon as it is read, so that only one file's data and locations
    # are alive at a time; plan overrides wait for the whole tree, since their base may come later.
    slots: list[list[Policy]] = []  # the compiled versions of each policy file, in file order
    by_id: dict[str, list[Draft | Kept]] = {}
    overrides: dict[str, list[tuple[list[Policy], Draft | Kept]]] = {}  # by the id they extend, in file order
    unread: set[str | None] = set()  # ids of policy files that could not be read (None: id unknown)
    named: list[PlansNamed] = []  # the plans each policy file names, checked against its payer's list
    paths = list(iter_rule_files(root))
    for (path, shown, raw, text), read in read_texts(file_texts(root, paths, files, digest, problems), len(paths), workers):
        source = read_source(shown, text, read, problems)
        if path.name == PAYER_FILE:
            payer = read_payer(source, problems) if source else None
            if payer:
                payers[payer.id] = payer
            continue
        draft, valid = policy_draft(source, problems) if source else (None, False)
        if draft is None:
            unread.add(written_id(source.data.get("id") if source else raw))
            continue
        if draft.data.get("plans"):
            named.append(PlansNamed(draft.data.get("payer"), draft.data.get("extends"),
                                     tuple(draft.data["plans"]), draft.at("plans")))
        slot: list[Policy] = []
        if valid:  # an invalid file is compiled for its other problems, and gives no policy
            slots.append(slot)
        kept = Kept(shown, raw) if valid else draft  # a valid file's draft is read again when needed
        if draft.data.get("extends") is None:
            if (policy := compile_draft(draft, problems, shared)) and valid:
                slot.append(policy)
        else:
            overrides.setdefault(draft.data["extends"], []).append((slot, kept))
        by_id.setdefault(draft.data["id"], []).append(kept)
    for base_id, children in overrides.items():  # one base's drafts alive at a time
        found = [Kept.drafted(b, problems) for b in by_id.get(base_id, [])]
        bases = [b for b in found if b]
        if len(bases) < len(found) or not bases and unread & {base_id, None}:
            continue  # a base could not be read (again): its own problem says why
        for slot, kept in children:
            if child := Kept.drafted(kept, problems):
                slot.extend(p for d in extend(child, bases, problems) if (p := compile_draft(d, problems, shared)))
    policies = [p for slot in slots for p in slot]
    check_versions(policies, problems)
    problems.extend(unlisted_plans(named, payers, {p.id: p.payer for p in policies}))
    problems.extend(unknown_values(policies, payers))
    # A base's problem is found again in every plan override merged with it: report it once.
    return Tree(policies, payers, digest.hexdigest()[:16], files, sorted(set(problems)))
