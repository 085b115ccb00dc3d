"""Ask the engine about every order of a hook call, under the Coverage it is answered for."""
from __future__ import annotations

from typing import Any

import engine
from service.crd.assertions import Assertion, coverage_problem, from_decision, no_billing_code
from service.crd.coverage_information import Answered, assertion_id
from service.crd.discovery import SUPPORTING_HOOKS
from service.crd.outcome import CrdError
from service.crd.requests import HookCall, Order, v1_request


def assess(call: HookCall, ruleset: Any) -> list[Answered]:
    """Every assertion for the call, evaluated against one rule set only; one pass per order."""
    answers: list[Answered] = []
    coverage = call.coverage
    for order in call.orders:
        assertions = _assertions(call, order, ruleset)
        ident = assertion_id(order.reference, coverage.reference, ruleset.digest, assertions)
        answers += [Answered(order, coverage.reference, coverage.payer.label, a, ident) for a in assertions]
    return answers


def _assertions(call: HookCall, order: Order, ruleset: Any) -> list[Assertion]:
    if call.coverage.problem:
        return [coverage_problem(*call.coverage.problem)]
    if not order.lines:
        return [no_billing_code(order.reference)]
    try:
        answer = ruleset.evaluate(v1_request(call, order))
    except engine.RequestError as err:
        raise CrdError(422, f"{order.reference} gives an invalid fact: {err}", order.reference) from err
    supporting = call.hook in SUPPORTING_HOOKS
    return [from_decision(decision, line, supporting)
            for decision, line in zip(answer["decisions"], order.lines, strict=True)]
