"""Ask the engine about every order of a hook call, under the Coverage it is answered for."""
from __future__ import annotations

from dataclasses import replace
from typing import Any

import engine
from engine.codes import normalize, system_of
from service.crd.assertions import (Assertion, coverage_problem, from_decision, no_billing_code, plan_unknown,
                                    technical, unreadable)
from service.crd.coverage_information import Answered, assertion_id
from service.crd.discovery import SUPPORTING_HOOKS
from service.crd.requests import HookCall, Line, Order, plan_problem, v1_request
from service.dtr.catalogue import Catalogue


def assess(call: HookCall, ruleset: Any, forms: Catalogue) -> list[Answered]:
    """Every assertion for the call, evaluated against one rule set only; one pass per order.
    Decisions that owe documentation name their DTR forms from ``forms`` (crd resp-38)."""
    answers: list[Answered] = []
    coverage = call.coverage
    for order in call.orders:
        assertions = _assertions(call, order, ruleset, forms)
        ident = assertion_id(order.reference, coverage.reference, ruleset.digest, assertions)
        answers += [Answered(order, coverage.reference, coverage.payer.label, a, ident) for a in assertions]
    return answers


def _assertions(call: HookCall, order: Order, ruleset: Any, forms: Catalogue) -> list[Assertion]:
    """The order's assertions: one per billing code, a malformed one answered alone (found-34)."""
    if call.coverage.problem:
        return [coverage_problem(*call.coverage.problem)]
    plans = ruleset.plans(call.coverage.payer.payer)
    unmapped = plan_problem(call.coverage, plans)
    if unmapped:
        return [plan_unknown(line, unmapped) for line in order.lines] or [plan_unknown(None, unmapped)]
    if not order.lines:
        return [technical(no_billing_code(order.reference), call.failures)]
    malformed = {line: f"{line.system} code {line.code!r} on {order.reference} is not a well-formed "
                       f"{line.system} code, so its requirements cannot be looked up" for line in order.lines
                 if system_of(normalize(line.code)) != line.system}
    lines = tuple(line for line in order.lines if line not in malformed)
    decided: dict[Line, Assertion] = {}
    try:
        answer = forms.link(ruleset.evaluate(v1_request(call, replace(order, lines=lines), plans))) if lines \
            else {"decisions": []}
        supporting = call.hook in SUPPORTING_HOOKS
        decided = {line: technical(from_decision(decision, line, supporting), call.failures)
                   for decision, line in zip(answer["decisions"], lines, strict=True)}
    except engine.RequestError as err:
        malformed.update({line: f"{order.reference} states a fact covreq cannot use: {err}" for line in lines})
    return [decided[line] if line in decided else unreadable(line, malformed[line]) for line in order.lines]
