"""The list of items and services that need prior authorization on a date, as payers must publish it
(CMS-0057-F), generated from the loaded rules.

For each code a payer's policies in force list on the date (ranges written out, up to
:data:`EXPAND_LIMIT` codes each), the policy's rules are partially evaluated with what is known
of every request for that code on that date (payer, plan, code, system, date of service;
:mod:`engine.evaluation.residual`). A code whose rules answer ``auth-needed`` whatever else a request says is
listed as ``always``; one whose answer still depends on other facts is listed as ``conditional``
with the steps that decide it, in words (the rule's residual condition and its author's reason);
one that can only answer ``no-auth`` is left out. The settings (places of service, types of bill)
are the values the policy's conditions name that can lead to ``auth-needed``.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Iterator, TypeAlias

from engine.language import ast
from engine.language.codes import EXPAND_LIMIT, CodeRange, system_of
from engine.errors import did_you_mean
from engine.language.logic import Analysed, analyse, walk
from engine.policy import AUTH_NEEDED, CodeGroup, Outcome, Policy
from engine.language.plain import wording
from engine.language.render import render
from engine.evaluation.residual import Partial, spelled
from engine.evaluation.ruleset import RuleSet

ALWAYS, CONDITIONAL = "always", "conditional"
#: The settings reported, and their names in words.
SETTING_FACTS = {"place_of_service": "place of service", "type_of_bill": "type of bill"}
#: A value no policy names, standing for "any other" setting.
_OTHER = "\x00other"


class PaListError(ValueError):
    """The list cannot be made as asked (unknown payer or plan); the message says why."""


@dataclass(frozen=True)
class Step:
    """One undecided rule (or the final answer, ``when`` None) on the way to a code's answer: its
    condition as rule text (``when``, for programs and authors) and in plain English (``words``)."""

    when: str | None
    words: str | None
    pa_needed: str
    reason: str

    def as_dict(self) -> dict[str, Any]:
        """The step as a JSON-ready mapping."""
        return {"when": self.when, "words": self.words, "pa_needed": self.pa_needed, "reason": self.reason}


@dataclass(frozen=True)
class Setting:
    """Where a code needs prior authorization, for one setting fact: ``only`` these values, or any
    value ``except`` these (both empty: no one value decides it; the condition says when)."""

    fact: str
    only: tuple[str, ...] = ()
    excepted: tuple[str, ...] = ()

    def words(self) -> str:
        """The setting in words, e.g. ``place of service 19, 22``."""
        name = SETTING_FACTS[self.fact]
        if self.only:
            return f"{name} {', '.join(self.only)}"
        if self.excepted:
            return f"any {name} except {', '.join(self.excepted)}"
        return f"{name}: as the condition says"  # no single value the policy names leads there


@dataclass(frozen=True)
class Item:
    """One code (or a range too long to write out) that needs prior authorization."""

    code: str
    system: str
    policy: Policy
    requirement: str
    steps: tuple[Step, ...]
    settings: tuple[Setting, ...]
    effective: dt.date
    end: dt.date | None

    def condition(self) -> str:
        """When prior authorization is needed, in words ("" when always)."""
        if self.requirement == ALWAYS:
            return ""
        *undecided, last = self.steps
        if last.pa_needed == AUTH_NEEDED and all(s.pa_needed != AUTH_NEEDED for s in undecided):
            return "Needed unless " + "; or unless ".join(_clause(s) for s in undecided) + "."
        if last.pa_needed != AUTH_NEEDED and all(s.pa_needed == AUTH_NEEDED for s in undecided):
            return "Needed only when " + "; or when ".join(_clause(s) for s in undecided) + "."
        ordered = [f"when {_clause(s)}: {s.pa_needed}" for s in undecided]
        return "The first that holds decides: " + "; ".join(ordered) + f"; otherwise: {last.pa_needed}."

    def as_dict(self) -> dict[str, Any]:
        """The item as a JSON-ready mapping."""
        return {"code": self.code, "system": self.system, "requirement": self.requirement,
                "condition": self.condition(), "steps": [s.as_dict() for s in self.steps],
                "settings": {s.fact: {"only": list(s.only), "except": list(s.excepted)} for s in self.settings},
                "settings_text": self.settings_text(),
                "policy": {**self.policy.summary(), "plans": sorted(self.policy.plans or ())},
                "effective": self.effective.isoformat(), "end": self.end.isoformat() if self.end else None}

    def settings_text(self) -> str:
        """Every setting in words ("any setting" when the rules do not depend on one)."""
        return "; ".join(s.words() for s in self.settings) or "any setting"


@dataclass(frozen=True)
class PaList:
    """The published list of one payer (and plan) on one date."""

    payer: str
    payer_title: str
    plan: str | None
    plan_title: str | None
    day: dt.date
    scope: str
    ruleset: str
    items: tuple[Item, ...]

    def as_dict(self) -> dict[str, Any]:
        """The list as a JSON-ready mapping."""
        return {"payer": self.payer, "payer_title": self.payer_title, "plan": self.plan,
                "plan_title": self.plan_title, "date": self.day.isoformat(), "scope": self.scope,
                "ruleset": self.ruleset, "items": [item.as_dict() for item in self.items]}


def _clause(step: Step) -> str:
    return f"{step.words} ({step.reason.rstrip('.')})" if step.reason else str(step.words)


def pa_list(rules: RuleSet, payer: str, day: dt.date, plan: str | None = None) -> PaList:
    """The items and services that need prior authorization for ``payer`` (and ``plan``) on ``day``;
    raises :class:`PaListError` for a payer or plan the rule set does not know."""
    if payer not in rules.payers():
        raise PaListError(f"unknown payer '{payer}' (this rule set knows {', '.join(rules.payers()) or 'none'})"
                          f"{did_you_mean(payer, rules.payers())}")
    if plan is not None and plan not in rules.plans(payer):
        known = sorted(rules.plans(payer))
        raise PaListError(f"unknown plan '{plan}' for payer '{payer}' (its plans: {', '.join(known) or 'none'})"
                          f"{did_you_mean(plan, known)}")
    items: list[Item] = []
    memo: dict[tuple[int, str], Answer] = {}
    for code, group, policy in _listed(rules, payer, plan, day):
        item = _item(policy, group, code, plan, day, memo)
        if item is not None:
            items.append(item)
    items.sort(key=lambda i: (i.code, i.policy.id))
    return PaList(payer, rules.payer_title(payer), plan, rules.plan_title(payer, plan) if plan else None,
                  day, rules.scope(payer, plan), rules.digest, tuple(items))


def _codes(group: CodeGroup) -> Iterator[str]:
    """The group's codes written out (policies list CPT and HCPCS codes and ranges, no wildcards);
    a range longer than EXPAND_LIMIT as itself, ``first-last``."""
    yield from sorted(group.codes.exact)
    for r in group.codes.ranges:
        if len(r) <= EXPAND_LIMIT:
            yield from r.codes()
        else:
            yield f"{_spelled(r, r.low)}-{_spelled(r, r.high)}"


def _spelled(r: CodeRange, number: int) -> str:
    return f"{r.prefix}{number:0{r.width}d}{r.suffix}"


def _listed(rules: RuleSet, payer: str, plan: str | None, day: dt.date) -> Iterator[tuple[str, CodeGroup, Policy]]:
    """(code, its group, policy) for each code a policy deciding it on ``day`` lists, once each."""
    seen: set[tuple[str, str]] = set()
    for policy in rules.policy_versions():
        if policy.payer != payer or not policy.in_force(day) or policy.pause_on(day):
            continue
        for group in policy.code_groups:
            if not group.in_force(day):
                continue
            for code in _codes(group):
                if (code, policy.id) in seen:
                    continue
                single = system_of(code) is not None
                deciding = rules.policies_for(payer, plan, code, day) if single else _plain(policy, plan)
                if any(p is policy for p in deciding):
                    seen.add((code, policy.id))
                    yield code, group, policy


def _plain(policy: Policy, plan: str | None) -> tuple[Policy, ...]:
    """For a range row: the policy when it applies to ``plan`` (overrides are not resolved by range)."""
    if plan is None:
        return (policy,) if policy.extends is None else ()
    return (policy,) if policy.plans is None or plan in policy.plans else ()


#: The facts that make a policy's answer differ from code to code when its rules read them.
_CODE_FACTS = frozenset({"code", "system"})
#: What a policy answers for a code on the date: (requirement, steps, settings), or None when it never
#: needs prior authorization; kept per policy, and per code only for the policies whose rules read it.
Answer: TypeAlias = "tuple[str, tuple[Step, ...], tuple[Setting, ...]] | None"


def _item(policy: Policy, group: CodeGroup, code: str, plan: str | None, day: dt.date,
          memo: dict[tuple[int, str], Answer]) -> Item | None:
    """The list entry of ``code`` under ``policy``, or None when it never needs prior authorization."""
    system = system_of(code)
    by_code = system is None or any(rule.facts & _CODE_FACTS for rule in policy.rules)
    key = (id(policy), code if by_code else "")
    if key not in memo:
        memo[key] = _answer(policy, code if system else None, plan, day)
    found = memo[key]
    if found is None:
        return None
    ends = [d for d in (policy.end, group.end) if d is not None]
    return Item(code, system or str(system_of(code.partition("-")[0])), policy, *found,
                max(policy.effective, group.effective or policy.effective), min(ends) if ends else None)


def _answer(policy: Policy, code: str | None, plan: str | None, day: dt.date) -> Answer:
    """What ``policy`` answers for ``code`` (None: a range row) on ``day`` (see :data:`Answer`)."""
    given: dict[str, Any] = {"payer": policy.payer, "date_of_service": day}
    if code is not None:
        given |= {"code": code, "system": system_of(code)}
    if plan is not None:
        given["plan"] = plan
    conditions = [analyse(rule.when, policy.value_sets) for rule in policy.rules]
    chain = _chain(policy, conditions, Partial(given))
    if all(outcome.pa_needed != AUTH_NEEDED for _, outcome, _ in chain):
        return None
    while len(chain) > 1 and chain[-2][1].pa_needed == chain[-1][1].pa_needed:
        del chain[-2]  # an undecided rule that answers as what follows it changes nothing
    steps = tuple(Step(None, None, outcome.pa_needed, outcome.reason or reason) if when is None else
                  Step(render(spelled(when, policy.value_sets)),
                       wording(when, policy.value_sets, policy.value_set_titles).holds(when), outcome.pa_needed,
                       outcome.reason or reason) for when, outcome, reason in chain)
    requirement = ALWAYS if len(steps) == 1 else CONDITIONAL
    return requirement, steps, () if requirement == ALWAYS else _settings(policy, conditions, given, chain)


def _chain(policy: Policy, conditions: list[Analysed], partial: Partial) -> list[tuple[Any, Outcome, str]]:
    """(residual condition, outcome, fallback reason) of each rule that may decide, in order, the
    last being the rule that surely does (its condition None) or the default."""
    chain: list[tuple[Any, Outcome, str]] = []
    for rule, info in zip(policy.rules, conditions):
        left = partial.of(info)
        if left is True:
            chain.append((None, rule.outcome, f"rule '{rule.id}' of {policy.title}"))
            return chain
        if left is not False:
            chain.append((left, rule.outcome, f"rule '{rule.id}' of {policy.title}"))
    chain.append((None, policy.default, f"the default of {policy.title}"))
    return chain


def _settings(policy: Policy, conditions: list[Analysed], given: dict[str, Any],
              chain: list[tuple[Any, Outcome, str]]) -> tuple[Setting, ...]:
    """For each setting fact the undecided conditions read: the values named in the policy that can
    still lead to ``auth-needed`` when the request gives that value (and not the other settings)."""
    read = {name for when, _, _ in chain if when is not None for name in _facts(when)}
    found = []
    for fact in SETTING_FACTS:
        if fact not in read:
            continue
        named = list(dict.fromkeys(text for info in conditions for _, name, text in info.setting_literals()
                                   if name == fact))
        absent = frozenset(SETTING_FACTS) - {fact}
        needing = [value for value in [*named, _OTHER]
                   if _may_need(policy, conditions, Partial({**given, fact: _example(value)}, absent))]
        if _OTHER in needing:
            excepted = tuple(v for v in named if v not in needing)
            if excepted:
                found.append(Setting(fact, excepted=excepted))
        else:
            found.append(Setting(fact, only=tuple(needing)))
    return tuple(found)


def _example(value: str) -> str:
    """A value standing for ``value``: a wildcard such as ``13*`` by a member (``131``)."""
    return value[:-1].ljust(3, "1") if value.endswith("*") else value


def _may_need(policy: Policy, conditions: list[Analysed], partial: Partial) -> bool:
    return any(outcome.pa_needed == AUTH_NEEDED for _, outcome, _ in _chain(policy, conditions, partial))


def _facts(node: Any) -> set[str]:
    """Every fact a residual condition names, ``known(x)`` included."""
    return {n.name for n in walk(node) if isinstance(n, ast.Fact)}
