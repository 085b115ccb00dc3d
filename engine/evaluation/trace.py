"""Explain traces: which rules ran, with which result, and how each predicate evaluated."""
from __future__ import annotations

from functools import lru_cache
from typing import Any, Mapping

from engine.language import ast
from engine.language.checker import Checker
from engine.language.compiler import Compiler, Test
from engine.language.parser import parse_condition
from engine.policy import Pause, Policy, Rule

_WORDS = {True: "true", False: "false", None: "unknown"}


@lru_cache(maxsize=4096)
def _traced(when: str, value_sets: tuple[tuple[str, tuple[str, ...]], ...]) -> tuple[Test, list[dict[str, Any]]]:
    expr = parse_condition(when)
    log: list[dict[str, Any]] = []

    def sink(node: ast.Expr, text: str, value: bool | None) -> None:
        log.append({"expr": text, "line": node.pos.line, "column": node.pos.column, "result": _WORDS[value]})
    return Compiler(Checker(dict(value_sets)).check(expr), sink).test(expr), log


def rule_trace(policy: Policy, rule: Rule, result: bool | None, facts: Mapping[str, Any]) -> dict[str, Any]:
    """One trace entry for a rule tried on ``facts``, with its predicates' values."""
    test, log = _traced(rule.when, tuple(sorted(policy.value_sets.items())))
    log.clear()
    test(facts)
    return {"policy": policy.id, "version": policy.version, "rule": rule.id, "when": rule.when,
            "location": str(rule.location), "result": _WORDS[result], "predicates": list(log)}


def pause_trace(policy: Policy, pause: Pause) -> dict[str, Any]:
    """The trace entry of a policy that answered from a pause instead of trying its rules."""
    return {"policy": policy.id, "version": policy.version, "location": str(policy.location),
            "paused": {"start": pause.start.isoformat(), "end": pause.end.isoformat() if pause.end else None,
                       "reason": pause.reason}}
