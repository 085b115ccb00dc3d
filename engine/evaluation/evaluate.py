"""Decide one service line: select the policies in force, run their rules, combine the answers."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

from engine.language.compiler import shift_date
from engine.language.facts import fact_of, unsettled
from engine.policy import (AUTH_NEEDED, CONDITIONAL, COVERED, NO_AUTH, NOT_COVERED, SATISFIED, DocRef,
                     Outcome, Policy, Rule)
from engine.evaluation.request import Authorization, Line

_PA_RANK = {NO_AUTH: 0, SATISFIED: 1, CONDITIONAL: 2, AUTH_NEEDED: 3}
_COVERED_RANK = {COVERED: 0, CONDITIONAL: 1, NOT_COVERED: 2}
#: Receives (policy, rule, result) for every rule tried, when a trace is wanted.
RuleSink = Callable[[Policy, Rule, "bool | None"], None]


@dataclass
class Answer:
    """One policy's (or the combined) answer for a line."""

    pa_needed: str
    covered: str
    #: (item, its policy, the texts of the conditions it is required only if they hold, None when always)
    documentation: list[tuple[DocRef, Policy, tuple[str, ...] | None]] = field(default_factory=list)
    info_needed: set[str] = field(default_factory=set)
    reasons: list[str] = field(default_factory=list)
    possible: set[str] = field(default_factory=set)
    policies: list[Policy] = field(default_factory=list)
    authorization: str | None = None


def _agree(values: set[str]) -> str:
    return values.pop() if len(values) == 1 else CONDITIONAL


def run_policy(policy: Policy, facts: Mapping[str, Any], sink: RuleSink | None = None) -> Answer:
    """Apply the policy's rules under hit policy ``first`` with Kleene unknowns (docs/authoring.md)."""
    pause = policy.pause_on(facts["date_of_service"]) if policy.pauses else None
    if pause is not None:
        return Answer(NO_AUTH, COVERED, reasons=[pause.reason], possible={NO_AUTH}, policies=[policy])
    index, unknown_at, _ = policy.program.run(facts)
    rules = policy.rules
    decisive = rules[index] if index < len(rules) else None
    if sink is not None:  # every rule up to the deciding one was tried
        for at, rule in enumerate(rules[:index + 1]):
            sink(policy, rule, True if at == index else None if at in unknown_at else False)
    pending = [rules[i] for i in unknown_at]
    unknown = {f for rule in pending for f in rule.facts if unsettled(fact_of(facts, f))}
    if not pending:  # the usual case: the first rule that holds decides, nothing is unknown
        outcome = policy.outcomes[index]
        return Answer(outcome.pa_needed, outcome.covered, _documents(policy, outcome, facts, None),
                      reasons=[outcome.reason or _fallback_reason(policy, decisive, outcome)],
                      possible={outcome.pa_needed}, policies=[policy])
    candidates = [*pending, decisive]
    outcomes = [r.outcome if r else policy.default for r in candidates]
    answer = Answer(_agree({o.pa_needed for o in outcomes}), _agree({o.covered for o in outcomes}),
                    possible={o.pa_needed for o in outcomes}, policies=[policy])
    if answer.pa_needed == CONDITIONAL or answer.covered == CONDITIONAL:
        answer.info_needed = unknown
    for index, (rule, outcome) in enumerate(zip(candidates, outcomes)):
        reason = outcome.reason or _fallback_reason(policy, rule, outcome)
        if reason not in answer.reasons:
            answer.reasons.append(reason)
        undecided = rule.when if rule is not None and index < len(pending) else None
        answer.documentation += _documents(policy, outcome, facts, undecided)
    return answer


def _documents(policy: Policy, outcome: Outcome, facts: Mapping[str, Any],
               undecided: str | None) -> list[tuple[DocRef, Policy, tuple[str, ...] | None]]:
    """The outcome's documentation items that may be required, each with the conditions on which it
    depends: the undecided rule's own, and the item's own when that is unknown."""
    found = []
    for ref in outcome.documentation:
        state = True if ref.test is None else ref.test.run(facts)
        if state is False:
            continue
        found.append((ref, policy, tuple(c for c in (undecided, ref.when if state is None else None) if c) or None))
    return found


def _fallback_reason(policy: Policy, rule: Rule | None, outcome: Outcome) -> str:
    """A reason for an outcome whose author gave none: which rule of which policy answered."""
    where = f"rule '{rule.id}'" if rule else "the default"
    return f"{policy.title}: {where} answers {outcome.pa_needed}."


def combine(answers: list[Answer]) -> Answer:
    """Join the answers of several policies for one line (most demanding answer wins)."""
    if len(answers) == 1:
        return answers[0]
    result = Answer(max((a.pa_needed for a in answers), key=_PA_RANK.__getitem__),
                    max((a.covered for a in answers), key=_COVERED_RANK.__getitem__))
    for answer in answers:
        result.documentation += answer.documentation
        result.info_needed |= answer.info_needed
        result.reasons += [r for r in answer.reasons if r not in result.reasons]
        result.possible |= answer.possible
        result.policies += answer.policies
    return result


def last_valid_day(start: dt.date, validity: tuple[int, str]) -> dt.date:
    """Last day an authorization decided on ``start`` is valid, ``start`` counting as day 1."""
    amount, unit = validity
    return shift_date(start, 1, amount, unit) - dt.timedelta(days=1)


def authorization_for(line: Line, day: dt.date, auths: Iterable[Authorization],
                      validity: tuple[int, str] | None) -> Authorization | None:
    """The first authorization on file for the line's code whose period covers ``day``."""
    for auth in auths:
        if auth.code not in (None, line.code) or day < auth.start:
            continue
        if auth.end is not None:
            last = auth.end
        elif validity is not None:
            last = last_valid_day(auth.start, validity)
        else:
            continue
        if day <= last:
            return auth
    return None


def may_be_authorized(answer: Answer) -> bool:
    """True when an authorization on file could turn ``answer`` into ``satisfied``: it needs (or may
    need) prior authorization."""
    return answer.pa_needed in (AUTH_NEEDED, CONDITIONAL) and AUTH_NEEDED in answer.possible


def apply_authorizations(answer: Answer, line: Line, day: dt.date, auths: tuple[Authorization, ...]) -> None:
    """Turn a needed (or possibly needed) authorization into ``satisfied`` when one is on file."""
    if not auths or not may_be_authorized(answer):
        return
    validities = [p.auth_validity for p in answer.policies if p.auth_validity]
    shortest = min(validities, key=lambda v: last_valid_day(day, v), default=None)
    auth = authorization_for(line, day, auths, shortest)
    if auth is None:
        return
    answer.pa_needed = SATISFIED
    answer.authorization = auth.id
    answer.documentation = []  # nothing is owed for an authorization already granted
    answer.info_needed = set() if answer.covered != CONDITIONAL else answer.info_needed
    answer.reasons.insert(0, f"Authorization {auth.id} on file covers {line.code} on {day.isoformat()}.")
