"""Ask the engine about every order of a hook call, under the Coverage it is answered for."""
from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable, Collection

import engine
from engine.language.codes import normalize, system_of
from service.crd.assertions import (Assertion, coverage_problem, from_decision, no_billing_code, not_r4,
                                    plan_unknown, technical, unreadable)
from service.crd.coverage_information import Answered, assertion_id, assertion_ids, is_about
from service.crd.discovery import SUPPORTING_HOOKS
from service.crd.requests import HookCall, Line, Order, plan_problem, v1_request
from service.dtr.catalogue import Catalogue
from service.fhir import r4
from service.fhir.values import as_list

#: a billing code's engine decision, or why it has none
Decided = dict[Line, dict[str, Any] | str]
#: a v1 request and the member id -> the request with the authorizations on file added
OnFile = Callable[[dict[str, Any], "str | None"], dict[str, Any]]


def assess(call: HookCall, ruleset: Any, forms: Catalogue, on_file: OnFile | None = None) -> list[Answered]:
    """Every assertion for the call, evaluated against one rule set only; one pass per order.
    Decisions that owe documentation name their DTR forms from ``forms`` (crd resp-38); ``on_file``
    adds to each order's request the authorizations on file for the Coverage's member
    (service/pas/onfile.py), which the engine answers ``satisfied``.

    A supporting hook asks for no clinical or admin documents (CRD hook-19), so its answer is
    poorer than a primary hook's. An order that already carries covreq's current primary answer
    for this Coverage (an order-select after order-sign) is answered with that answer: its
    coverage-information is not replaced (no systemAction) and its card is not thinned."""
    answers: list[Answered] = []
    coverage = call.coverage
    supporting = call.hook in SUPPORTING_HOOKS
    plans = () if coverage.problem else ruleset.plans(coverage.payer.payer)
    unmapped = None if coverage.problem else plan_problem(coverage, plans)
    for order in call.orders:
        decided = {} if unmapped else _decide(call, order, ruleset, forms, plans, on_file)
        assertions = _assertions(call, order, decided, supporting, unmapped)
        ident = _id(call, order, ruleset.digest, assertions)
        if supporting:
            richer = _assertions(call, order, decided, False, unmapped)
            richer_id = _id(call, order, ruleset.digest, richer)
            if richer_id != ident and richer_id in _carried(order, coverage.reference):
                assertions, ident = richer, richer_id
        answers += [Answered(order, coverage.reference, coverage.payer.label, a, ident) for a in assertions]
    return answers


def _id(call: HookCall, order: Order, digest: str, assertions: list[Assertion]) -> str:
    return assertion_id(order.reference, call.coverage.reference, digest, assertions,
                        ehr=call.fhir_server, patient=call.patient)


def _carried(order: Order, coverage: str) -> set[Any]:
    """The coverage-assertion-ids of covreq's answers for ``coverage`` that the order carries."""
    return set(assertion_ids(e for e in as_list(order.resource.get("extension")) if is_about(e, coverage)))


def _decide(call: HookCall, order: Order, ruleset: Any, forms: Catalogue, plans: Collection[str],
            on_file: OnFile | None) -> Decided:
    """Each billing code's decision under the payer's ``plans``, a malformed one refused alone
    (found-34); nothing is asked when the Coverage cannot be answered for or the order has no
    billing code."""
    if call.coverage.problem or not order.lines:
        return {}
    malformed: Decided = {line: f"{line.system} code {line.code!r} on {order.reference} is not a well-formed "
                                f"{line.system} code, so its requirements cannot be looked up"
                          for line in order.lines if system_of(normalize(line.code)) != line.system}
    lines = tuple(line for line in order.lines if line not in malformed)
    try:
        body = v1_request(call, replace(order, lines=lines), plans)
        body = on_file(body, call.coverage.member) if on_file and lines else body
        answer = forms.link(ruleset.evaluate(body)) if lines else {"decisions": []}
        decided: Decided = dict(zip(lines, answer["decisions"], strict=True))
    except engine.RequestError as err:
        decided = {line: f"{order.reference} states a fact covreq cannot use: {err}" for line in lines}
    return {line: decided[line] if line in decided else malformed[line] for line in order.lines}


def _assertions(call: HookCall, order: Order, decided: Decided, supporting: bool,
                unmapped: str | None) -> list[Assertion]:
    """The order's assertions: one per billing code, as a supporting or a primary hook gives them;
    conditional on the plan for each code when the Coverage's plan is ``unmapped`` (why); an order
    that is not valid R4 only says so."""
    if order.problems:
        return [not_r4(order.reference, r4.describe(list(order.problems)))]
    if call.coverage.problem:
        return [coverage_problem(*call.coverage.problem)]
    if unmapped:
        return [plan_unknown(line, unmapped) for line in order.lines] or [plan_unknown(None, unmapped)]
    if not order.lines:
        return [technical(no_billing_code(order.reference), call.failures)]
    return [technical(from_decision(d, line, supporting), call.failures) if isinstance(d, dict)
            else unreadable(line, d) for line, d in decided.items()]
