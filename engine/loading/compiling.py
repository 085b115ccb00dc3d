"""Compiling a policy draft into the immutable model of :mod:`engine.policy`: dates, code groups,
conditions checked and compiled, documentation, rules and pauses; versions must not overlap."""
from __future__ import annotations

import dataclasses
import datetime as dt
from functools import lru_cache, partial
from typing import Any, Callable, TypeVar

from engine.errors import ConditionError, bad_date
from engine.language import ast
from engine.language.checker import Checker
from engine.language.codegen import Lazy, compile_condition, compile_rules
from engine.language.codes import CPT, EXPAND_BUDGET, HCPCS, CodeError, CodeSet, join, parse_member
from engine.language.parser import parse_condition
from engine.loading.drafts import Draft
from engine.loading.source import Problems, Source
from engine.loading.yamlsource import position_in_scalar
from engine.policy import (AUTH_NEEDED, COVERED, NO_AUTH, CodeGroup, DocItem, DocRef, Location, Outcome, Pause,
                           Policy, Rule)


@lru_cache(maxsize=65536)
def parsed_condition(text: str) -> tuple[ast.Expr, tuple[str, ...]]:
    """The condition's syntax tree and the names of the value sets it refers to."""
    expr = parse_condition(text)
    return expr, ast.value_sets_of(expr)


#: A checked condition: its program (compiled on first use) and the facts whose absence can make it unknown.
Compiled = tuple[Lazy, frozenset[str]]


V = TypeVar("V")


#: Most code groups of one policy with different dates (``effective``/``end``); entries with the
#: same dates form one group.
MAX_CODE_GROUPS = 1000


class Shared:
    """What the policy versions of one load share. Versions and plan overrides repeat most of their
    content, so equal immutable values are made once: conditions compiled for the same value sets
    (a closure holds no state), parsed code items, outcomes, catalogues, value sets and texts."""

    def __init__(self) -> None:
        self.conditions: dict[tuple[object, ...], Compiled] = {}
        self.programs: dict[tuple[object, ...], Lazy] = {}
        self.code_items: dict[str, CodeSet] = {}
        self.values: dict[object, Any] = {}

    def value(self, value: V) -> V:
        """``value``, or the equal value met first in this load."""
        return self.values.setdefault(value, value)  # type: ignore[no-any-return]

    def mapping(self, mapping: dict[str, V]) -> dict[str, V]:
        """``mapping``, or the equal mapping met first in this load (shared, so never to be changed)."""
        return self.values.setdefault((dict, *mapping.items()), mapping)  # type: ignore[no-any-return]

    def program(self, conditions: tuple[str, ...], documentation: tuple[tuple[str, ...], ...],
                value_sets: dict[str, tuple[str, ...]]) -> Lazy:
        """The rules ``conditions`` as one program answering also the values of each outcome's
        documentation conditions (``documentation``: the rules' outcomes', then the default's);
        versions with the same rules, documentation conditions and value sets share it."""
        key = (conditions, documentation, id(value_sets))  # equal value sets are one shared mapping
        if key not in self.programs:
            self.programs[key] = Lazy(partial(compile_rules, conditions, value_sets, documentation))
        return self.programs[key]

    def code_item(self, text: str) -> CodeSet:
        """The CPT/HCPCS code, range or group member ``text`` as written; raise :class:`CodeError`."""
        if text not in self.code_items:
            self.code_items[text] = parse_member(text, (CPT, HCPCS))
        return self.code_items[text]


class _Conditions:
    """Checks the conditions of one policy version. A condition whose text and referenced value
    sets another version has checked gets the same program and facts."""

    def __init__(self, value_sets: dict[str, tuple[str, ...]], shared: Shared) -> None:
        self.checker = Checker(value_sets)
        self.shared = shared

    def compile(self, text: str) -> Compiled:
        """Parse and check ``text`` (raise :class:`ConditionError`); its program compiles on first use."""
        expr, named = parsed_condition(text)
        key = (text, *((name, self.checker.value_sets.get(name)) for name in named))
        compiled = self.shared.conditions
        if key not in compiled:
            self.checker.check(expr)
            compiled[key] = Lazy(partial(compile_condition, text, self.checker.value_sets)), ast.facts_of(expr)
        return compiled[key]


def _date(value: Any, where: Callable[[], Location], problems: Problems) -> dt.date | None:
    """The date ``value``, or None with an ``E-date`` problem at ``where()`` (located only then)."""
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        problems.add(where(), "E-date", bad_date(str(value)))
        return None


def compile_draft(draft: Draft, problems: Problems, shared: Shared) -> Policy | None:
    """Compile one draft; record problems and return None when it cannot be used."""
    before = len(problems)
    src, data, text = draft.source, draft.data, shared.value
    effective = _date(data["effective"], partial(draft.at, "effective"), problems)
    end = _date(data["end"], partial(draft.at, "end"), problems) if data.get("end") else None
    if effective and end and end < effective:
        problems.add(draft.at("end"), "E-date", f"end {end} is before effective {effective}")
    value_sets = shared.mapping({name: shared.value(s.texts(*_values_key(s, key)))
                                 for name, (s, key) in draft.value_sets.items()})
    titles = shared.mapping({name: text(s.value_at(key)["title"]) for name, (s, key) in draft.value_sets.items()
                             if isinstance(s.value_at(key), dict) and "title" in s.value_at(key)})
    conditions = _Conditions(value_sets, shared)
    catalogue = shared.mapping({doc_id: shared.value(DocItem(doc_id, s.value_at(key)["text"], s.value_at(key).get("kind", "clinical")))
                                for doc_id, (s, key) in draft.documentation.items()})
    groups = shared.value(_code_groups(draft.codes, shared, problems))
    rules: list[Rule] = []
    seen_ids: dict[str, Location] = {}
    for index, (s, key) in enumerate(draft.rules):
        rule = _rule(s, key, index, conditions, catalogue, problems)
        if rule is None:
            continue
        if rule.id in seen_ids:
            problems.add(rule.location, "E-duplicate-id", f"rule id '{rule.id}' is already used at {seen_ids[rule.id]}")
        seen_ids.setdefault(rule.id, rule.location)
        rules.append(rule)
    default = _outcome(draft.inherited.get("default", src), ("default",), data.get("default", {}), conditions,
                       catalogue, problems)
    if "add_documentation" in data:
        added = _doc_refs(src, ("add_documentation",), conditions, catalogue, problems)
        rules = [dataclasses.replace(r, outcome=_with_documentation(r.outcome, added, conditions.shared)) for r in rules]
        default = _with_documentation(default, added, conditions.shared)
    pauses = _pauses(draft.inherited.get("pauses", src), data.get("pauses", []), problems)
    auto_affirm = _auto_affirm(draft, data.get("authorization", {}), problems)
    problems[before:] = [p for p in problems[before:] if p.code not in draft.follow_ons]
    if len(problems) > before or effective is None:
        return None
    return Policy(
        id=text(data["id"]), title=text(data["title"]), payer=text(data["payer"]),
        version=text(str(data.get("version", data["effective"]))), effective=effective, end=end,
        url=text(data["source"]["url"]), citation=text(data["source"].get("citation", "")),
        notes=text(data.get("notes", "")), plans=text(frozenset(data["plans"])) if data.get("plans") else None,
        extends=data.get("extends"), code_groups=groups, rules=tuple(rules), default=default,
        documentation=catalogue, value_sets=value_sets, value_set_titles=titles,
        auth_validity=_validity(data.get("authorization", {})),
        auto_affirm=auto_affirm,
        questionnaire=data.get("questionnaire"), location=src.at("id"),
        program=shared.program(tuple(r.when for r in rules), tuple(
            tuple(ref.when for ref in outcome.documentation if ref.test is not None and ref.when)
            for outcome in (*(r.outcome for r in rules), default)), value_sets),
        files=tuple(dict.fromkeys(s.path for s, _ in [(src, ()), *draft.rules])),
        pauses=shared.value(pauses),
    )


def _values_key(source: Source, key: tuple[object, ...]) -> tuple[object, ...]:
    """Where the members of the value set at ``key`` are: its list, or the ``values`` of a titled set."""
    return (*key, "values") if isinstance(source.value_at(key), dict) else key


def _with_documentation(outcome: Outcome, added: tuple[DocRef, ...], shared: Shared) -> Outcome:
    """``outcome`` with the items ``added`` when it needs prior authorization (each item once)."""
    if outcome.pa_needed != AUTH_NEEDED:
        return outcome
    ids = {ref.id for ref in outcome.documentation}
    extra = tuple(ref for ref in added if ref.id not in ids)
    return shared.value(dataclasses.replace(outcome, documentation=outcome.documentation + extra)) if extra else outcome


def _pauses(src: Source, entries: list[dict[str, Any]], problems: Problems) -> tuple[Pause, ...]:
    """The policy's pauses; an end before its start is an ``E-date`` problem."""
    pauses = []
    for i, entry in enumerate(entries):
        start = _date(entry["start"], partial(src.at, "pauses", i, "start"), problems)
        end = _date(entry["end"], partial(src.at, "pauses", i, "end"), problems) if "end" in entry else None
        if start and end and end < start:
            problems.add(src.at("pauses", i, "end"), "E-date", f"pause end {end} is before its start {start}")
        elif start:
            pauses.append(Pause(start, end, entry["reason"], entry.get("url", "")))
    return tuple(pauses)


def _auto_affirm(draft: Draft, authorization: dict[str, Any], problems: Problems) -> bool:
    """``authorization.automatic_affirmation``; true without a validity period is an ``E-affirmation``
    problem (an automatic affirmation must state how long it holds)."""
    wanted = authorization.get("automatic_affirmation", False) is True
    if wanted and _validity(authorization) is None:
        src = draft.inherited.get("authorization", draft.source)
        problems.add(src.at("authorization", "automatic_affirmation"), "E-affirmation",
                     "automatic_affirmation needs valid_days or valid_months: an affirmation states how long it holds")
        return False
    return wanted


def _validity(authorization: dict[str, Any]) -> tuple[int, str] | None:
    if "valid_months" in authorization:
        return authorization["valid_months"], "month"
    if "valid_days" in authorization:
        return authorization["valid_days"], "day"
    return None


def _code_groups(entries: list[tuple[Source, tuple[object, ...]]], shared: Shared,
                 problems: Problems) -> tuple[CodeGroup, ...]:
    """The policy's code groups. Entries in force over the same dates (every plain code, range or
    list) are joined into one group, so that many entries cost no more than their codes."""
    members: dict[tuple[dt.date | None, dt.date | None], list[CodeSet]] = {}
    for src, key in entries:
        entry = src.value_at(key)
        if isinstance(entry, dict):
            listed, texts = key + ("codes",), src.texts(*key, "codes")
            effective = _date(entry["effective"], partial(src.at, *key, "effective"), problems) if "effective" in entry else None
            end = _date(entry["end"], partial(src.at, *key, "end"), problems) if "end" in entry else None
        else:
            listed, texts, effective, end = None, (src.raw(*key),), None, None
        if (effective, end) not in members and len(members) == MAX_CODE_GROUPS:
            problems.add(src.at(*key), "E-code-groups", f"codes are listed under more than {MAX_CODE_GROUPS} "
                                                        "different pairs of dates; join the groups")
            break
        found = members.setdefault((effective, end), [])
        for i, text in enumerate(texts):
            try:
                found.append(shared.code_item(text))
            except CodeError as exc:
                problems.add(src.at(*key) if listed is None else src.at(*listed, i), "E-code", str(exc))
    groups, budget = [], EXPAND_BUDGET  # exact codes the policy's groups may hold, ranges expanded
    for (effective, end), sets in members.items():
        codes = join(sets, budget)
        budget = max(0, budget - len(codes.exact))
        groups.append(shared.value(CodeGroup(codes, effective, end)))
    return tuple(groups)


def _condition(src: Source, key: tuple[object, ...], conditions: _Conditions,
               problems: Problems) -> tuple[str, Lazy, frozenset[str]] | None:
    """Parse and check the condition at ``key``; returns (text, program, facts)."""
    value = src.value_at(key)
    text = ("true" if value else "false") if isinstance(value, bool) else str(value)
    try:
        test, facts = conditions.compile(text)
    except ConditionError as exc:
        spot = src.locations.find(key)
        line, column = position_in_scalar(spot, exc.line, exc.column, src.lines)
        problems.add(Location(src.path, line, column), exc.code, exc.message)
        return None
    return conditions.shared.value(text), test, facts


def _doc_refs(src: Source, key: tuple[object, ...], conditions: _Conditions, catalogue: dict[str, DocItem],
              problems: Problems) -> tuple[DocRef, ...]:
    refs = []
    for i, ref in enumerate(src.value_at(key)):
        doc_id = ref["id"] if isinstance(ref, dict) else ref
        if doc_id not in catalogue:
            problems.add(src.at(*key, i), "E-unknown-doc",
                         f"documentation item '{doc_id}' is not in the policy's documentation catalogue")
            continue
        if isinstance(ref, dict) and "when" in ref:
            compiled = _condition(src, key + (i, "when"), conditions, problems)
            if compiled:
                refs.append(DocRef(doc_id, compiled[1], compiled[0]))
        else:
            refs.append(DocRef(doc_id))
    return tuple(refs)


def _outcome(src: Source, key: tuple[object, ...], data: dict[str, Any], conditions: _Conditions,
             catalogue: dict[str, DocItem], problems: Problems) -> Outcome:
    docs = _doc_refs(src, key + ("documentation",), conditions, catalogue, problems) if "documentation" in data else ()
    return conditions.shared.value(Outcome(data.get("pa_needed", NO_AUTH), data.get("covered", COVERED), docs,
                                           data.get("reason", "")))


def _rule(src: Source, key: tuple[object, ...], index: int, conditions: _Conditions, catalogue: dict[str, DocItem],
          problems: Problems) -> Rule | None:
    data = src.value_at(key)
    compiled = _condition(src, key + ("when",), conditions, problems)
    outcome = _outcome(src, key, data, conditions, catalogue, problems)
    if compiled is None:
        return None
    text, _, facts = compiled
    return Rule(conditions.shared.value(data.get("id", f"rule-{index + 1}")), index, text, facts, outcome,
                src.at(*key))


def check_versions(policies: list[Policy], problems: Problems) -> None:
    """Versions of one policy id (for one plan set) must not overlap in time."""
    by_key: dict[tuple[str, str | None], list[Policy]] = {}
    for policy in policies:
        by_key.setdefault((policy.id, policy.extends), []).append(policy)
    for versions in by_key.values():
        versions.sort(key=lambda p: p.effective)
        for earlier, later in zip(versions, versions[1:]):
            if earlier.end is None or later.effective <= earlier.end:
                if earlier.location.path == later.location.path:
                    continue  # one child file merged with consecutive base versions
                problems.add(later.location, "E-version-overlap",
                             f"policy '{later.id}' version from {later.effective} overlaps the version at "
                             f"{earlier.location} ({earlier.effective} to {earlier.end or 'open'})")
