"""Conditions of the policy language as FHIRPath over a QuestionnaireResponse's answers, which
the form's root variables hold (one per fact, computed by the form's CQL Library:
service/dtr/cqlanswers.py).

FHIRPath's empty collection behaves like covreq's unknown under ``and``, ``or``, ``not()``,
comparisons and ``in``, so a condition keeps its three-valued meaning. What has no faithful
FHIRPath here gives None (the caller then leaves the item always enabled): date shifts and facts
compared with facts. Ages are read through the date of birth and the date of service.
"""
from __future__ import annotations

import datetime as dt
import math
import re
from typing import Iterable

from engine.language import ast
from engine.language.codes import CodeRange, CodeSet
from engine.language.facts import ALWAYS
from engine.language.logic import Analysed
from engine.evaluation.needs import Route
from service.dtr.facts import ORDER_COMPLETE

#: The multi-valued fact known only in part unless the order is complete.
OPEN = "other_codes"
#: The age is read through the date of birth and the date of service.
AGE, BIRTH, DAY = "patient.age", "patient.birth_date", "date_of_service"
_FLIP = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "=": "=", "!=": "!="}


class _Untranslatable(Exception):
    pass


def _string(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def variable_name(fact: str) -> str:
    """The name of the variable that holds a fact's answers, a FHIR id that is also a FHIRPath name
    (``place_of_service`` -> ``placeOfService``)."""
    first, *rest = re.split(r"[._]", fact)
    return first + "".join(part.capitalize() for part in rest)


def has_variable(fact: str) -> bool:
    """Whether a fact has a variable: not the age (derived: read through the date of birth and the
    date of service) nor the payer (the form's own)."""
    return fact not in (AGE, "payer")


def variable_facts(facts: Iterable[str]) -> list[str]:
    """The facts whose variables conditions over ``facts`` read (each variable holds its fact's
    answers: service/dtr/cqlanswers.py); ``order_complete`` closes ``other_codes``."""
    read = list(facts)
    names = [*read, *([ORDER_COMPLETE.name] if OPEN in read else []), *((BIRTH, DAY) if AGE in read else ())]
    return [n for n in dict.fromkeys(names) if has_variable(n)]


def _fact(name: str) -> str:
    if not has_variable(name):  # the age outside a comparison with a number, the payer
        raise _Untranslatable
    return "%" + variable_name(name)


def _literal(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, dt.date):
        return "@" + value.isoformat()
    return _string(str(value))


def _wrap(expression: str) -> str:
    """``expression`` in parentheses, unless one pair already encloses all of it."""
    depth = 0
    for index, char in enumerate(expression):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth == 0 and index < len(expression) - 1:
            return f"({expression})"
    return expression if expression.startswith("(") else f"({expression})"


def _not(expression: str) -> str:
    return f"{_wrap(expression)}.not()"


def _at_least(years: int) -> str:
    """The patient is at least ``years`` old on the date of service: born on or before that date
    ``years`` earlier (Feb 29 going back to Feb 28, as whole years of age count)."""
    return f"(%{variable_name(BIRTH)} <= %{variable_name(DAY)} - {years} years)"


def _age(op: str, value: float) -> str:
    """``patient.age <op> value`` through the date of birth (the engine's age is whole years)."""
    low, high = math.ceil(value), math.floor(value) + 1  # age >= low; age < high
    if op == ">=":
        return _at_least(low)
    if op == ">":
        return _at_least(high)
    if op == "<":
        return _not(_at_least(low))
    if op == "<=":
        return _not(_at_least(high))
    exactly = f"({_at_least(low)} and {_not(_at_least(high))})" if value.is_integer() else "false"
    return exactly if op == "=" else _not(exactly)


def _in_range(value: str, span: CodeRange) -> str:
    """``value`` is a code of the range: its shape, then its number between the ends."""
    shape = _string(f"^{re.escape(span.prefix)}[0-9]{{{span.width}}}{re.escape(span.suffix)}$")
    number = f"{value}.substring({len(span.prefix)}, {span.width}).toInteger()"
    return f"({value}.matches({shape}) and {number} >= {span.low} and {number} <= {span.high})"


def _in(value: str, members: object) -> str:
    """``value`` is a member of a resolved set: exact members, wildcard prefixes and code ranges."""
    if isinstance(members, CodeSet):
        exact, prefixes, ranges = sorted(members.exact), members.prefixes, members.ranges
    else:
        exact, prefixes, ranges = sorted(members, key=str), (), ()  # type: ignore[call-overload]
    tests = [f"{value} in ({' | '.join(_literal(m) for m in exact)})"] if exact else []
    tests += [f"{value}.startsWith({_literal(p)})" for p in prefixes]
    tests += [_in_range(value, span) for span in ranges]
    return "(" + " or ".join(tests) + ")" if tests else "false"


class _Translator:
    def __init__(self, info: Analysed) -> None:
        self.info = info

    def test(self, node: ast.Expr) -> str:  # noqa: C901 - one branch per node kind
        if isinstance(node, ast.Literal) and node.kind == "bool":
            return _literal(self.info.checked.values[node])
        if isinstance(node, ast.Known):
            known = BIRTH if node.fact.name == AGE else node.fact.name
            return "true" if known in ALWAYS else f"{_fact(known)}.exists()"
        if isinstance(node, (ast.And, ast.Or)):
            joiner = " and " if isinstance(node, ast.And) else " or "
            return "(" + joiner.join(self.test(o) for o in node.operands) + ")"
        if isinstance(node, ast.Not):
            return _not(self.test(node.operand))
        if isinstance(node, ast.Compare):
            return self._compare(node)
        if isinstance(node, ast.Member) and isinstance(node.item, ast.Fact):
            found = _in(_fact(node.item.name), self.info.checked.sets[node.set])
            return _not(found) if node.negated else found
        if isinstance(node, ast.Overlaps) and isinstance(node.many, ast.Fact):
            return self._some(node.many.name, _in("$this", self.info.checked.sets[node.set]))
        if isinstance(node, ast.Contains) and isinstance(node.many, ast.Fact) and isinstance(node.value, ast.Literal):
            return self._some(node.many.name, f"$this = {_literal(self.info.checked.values[node.value])}")
        raise _Untranslatable

    def _compare(self, node: ast.Compare) -> str:
        left, right, op = node.left, node.right, "=" if node.op == "==" else node.op
        if isinstance(left, ast.Fact) and left.name == AGE and isinstance(right, ast.Literal):
            return _age(op, float(self.info.checked.values[right]))  # type: ignore[arg-type]
        if isinstance(right, ast.Fact) and right.name == AGE and isinstance(left, ast.Literal):
            return _age(_FLIP[op], float(self.info.checked.values[left]))  # type: ignore[arg-type]
        if isinstance(left, ast.Fact) and isinstance(right, ast.Literal):
            return f"({_fact(left.name)} {op} {_literal(self.info.checked.values[right])})"
        if isinstance(right, ast.Fact) and isinstance(left, ast.Literal):
            return f"({_literal(self.info.checked.values[left])} {op} {_fact(right.name)})"
        raise _Untranslatable

    @staticmethod
    def _some(name: str, test: str) -> str:
        """Some answer of a multi-valued fact passes ``test``; unknown when it has no answer and
        can be unknown (an unanswered list of exemptions or modifiers is empty, not unknown)."""
        found = f"{_fact(name)}.where({test}).exists()"
        if name == OPEN:  # other codes may be on parts of the order not sent, unless it is complete
            return f"iif({found}, true, iif(%{variable_name(ORDER_COMPLETE.name)} = true, false, {{}}))"
        return found if name in ALWAYS else f"iif({_fact(name)}.exists(), {found}, {{}})"


def condition(info: Analysed) -> str | None:
    """The condition as a FHIRPath boolean (empty when unknown), or None when it has none."""
    try:
        return _Translator(info).test(info.expr)
    except _Untranslatable:
        return None


def may_hold(routes: tuple[Route, ...]) -> str | None:
    """FHIRPath that is true unless every route is known to be closed (an ``enableWhenExpression``
    for an item owed by these routes), or None when some condition has no FHIRPath."""
    parts = []
    for route in routes:
        terms = [condition(info) for info in route.unless]
        terms = [None if t is None else _not(t) for t in terms]
        terms += [condition(info) for info in (route.rule, route.own) if info is not None]
        if any(t is None for t in terms):
            return None
        parts.append(" and ".join(t for t in terms if t != "true") or "true")  # type: ignore[misc]
    owed = parts[0] if len(parts) == 1 else " or ".join(_wrap(p) for p in parts)
    return f"{_wrap(owed)}.anyFalse().not()"
