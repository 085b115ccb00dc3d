"""Ask the engine about every order of a hook call, under every coverage the call names."""
from __future__ import annotations

from typing import Any

import engine
from service.crd.assertions import Assertion, coverage_problem, from_decision, no_billing_code
from service.crd.discovery import SUPPORTING_HOOKS
from service.crd.outcome import CrdError
from service.crd.payers import CoveragePayer
from service.crd.requests import CoverageContext, HookCall, Order, v1_request
from service.crd.responses import Answered, assertion_id

_UNSEEN_COVERAGE = ("coverage-not-found",
                    "The Coverage this order names was not in the request, and covreq does not "
                    "query the EHR for it.")


def assess(call: HookCall, ruleset: Any) -> list[Answered]:
    """Every assertion for the call, evaluated against one rule set only."""
    answers: list[Answered] = []
    payers = set(ruleset.payers())
    for order in call.orders:
        coverages = call.coverages or tuple(
            CoverageContext(ref, CoveragePayer("the payer"), _UNSEEN_COVERAGE) for ref in order.insurance)
        for coverage in coverages:
            for assertion in _assertions(call, order, coverage, ruleset, payers):
                code = assertion.line.code if assertion.line else ""
                answers.append(Answered(order, coverage.reference, coverage.payer.label, assertion,
                                        assertion_id(call.hook_instance, order.reference,
                                                     coverage.reference, code, ruleset.digest)))
    return answers


def _assertions(call: HookCall, order: Order, coverage: CoverageContext, ruleset: Any,
                payers: set[str]) -> list[Assertion]:
    if coverage.problem:
        return [coverage_problem(*coverage.problem)]
    if coverage.payer.payer not in payers:
        return [coverage_problem("no-member-found",
                                 f"This service holds no coverage rules for {coverage.payer.label}.")]
    if not order.lines:
        return [no_billing_code(order.reference)]
    try:
        answer = ruleset.evaluate(v1_request(call, order, coverage))
    except engine.RequestError as err:
        raise CrdError(422, f"{order.reference} gives an invalid fact: {err}", order.reference) from err
    supporting = call.hook in SUPPORTING_HOOKS
    return [from_decision(decision, line, supporting)
            for decision, line in zip(answer["decisions"], order.lines, strict=True)]
