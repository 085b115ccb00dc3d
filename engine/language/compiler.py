"""Compile a checked condition into Python closures over a fact mapping.

A compiled condition is a function ``ctx -> True | False | None`` where ``None`` means unknown
(Kleene logic). ``ctx`` maps fact names to values; a missing key or ``None`` is an unknown fact.
Nothing is ever executed from rule text: closures are built from the typed syntax tree.
"""
from __future__ import annotations

import calendar
import datetime as dt
import operator
from typing import Any, Callable, Iterable, Mapping

from engine.language import ast
from engine.language.checker import Checked
from engine.language.facts import OpenSet, fact_of
from engine.language.render import render

Ctx = Mapping[str, Any]
Test = Callable[[Ctx], "bool | None"]
Value = Callable[[Ctx], Any]
#: A trace sink receives (node, rendered text, value) for every predicate evaluated.
Sink = Callable[[ast.Expr, str, "bool | None"], None]

_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le,
    ">": operator.gt, ">=": operator.ge,
}


def shift_date(day: dt.date, sign: int, amount: int, unit: str) -> dt.date:
    """Add or subtract a duration; months and years clamp to the last day of the month, and a
    result past the calendar's ends (years 1 and 9999) is that end: date arithmetic never raises."""
    if unit in ("day", "week"):
        try:
            return day + sign * dt.timedelta(days=amount * (7 if unit == "week" else 1))
        except OverflowError:
            return dt.date.max if sign > 0 else dt.date.min
    months = day.year * 12 + day.month - 1 + sign * amount * (12 if unit == "year" else 1)
    year, month = divmod(months, 12)
    if not dt.MINYEAR <= year <= dt.MAXYEAR:
        return dt.date.max if year > dt.MAXYEAR else dt.date.min
    last = calendar.monthrange(year, month + 1)[1]
    return dt.date(year, month + 1, min(day.day, last))


class Compiler:
    """Builds closures for conditions checked by :class:`engine.language.checker.Checker`."""

    def __init__(self, checked: Checked, sink: Sink | None = None) -> None:
        self.checked = checked
        self.sink = sink

    def test(self, node: ast.Expr) -> Test:
        """Compile a boolean expression; with a sink, predicates report their values."""
        fn = self._test(node)
        if self.sink is None or isinstance(node, (ast.And, ast.Or, ast.Not)):
            return fn
        sink, text = self.sink, render(node)

        def traced(ctx: Ctx) -> bool | None:
            result = fn(ctx)
            sink(node, text, result)
            return result
        return traced

    def _test(self, node: ast.Expr) -> Test:  # noqa: C901 - one branch per node kind
        if isinstance(node, ast.Literal):
            constant = bool(self.checked.values[node])
            return lambda ctx: constant
        if isinstance(node, ast.Known):
            name = node.fact.name
            return lambda ctx: fact_of(ctx, name) is not None
        if isinstance(node, ast.And):
            return _kleene(tuple(self.test(o) for o in node.operands), False)
        if isinstance(node, ast.Or):
            return _kleene(tuple(self.test(o) for o in node.operands), True)
        if isinstance(node, ast.Not):
            inner = self.test(node.operand)
            return lambda ctx: None if (v := inner(ctx)) is None else not v
        if isinstance(node, ast.Compare):
            return self._compare(node)
        if isinstance(node, ast.Member):
            item, members, negated = self.value(node.item), self.checked.sets[node.set], node.negated
            return lambda ctx: None if (v := item(ctx)) is None else (v in members) != negated  # type: ignore[operator]
        if isinstance(node, ast.Overlaps):
            many, members = self.value(node.many), self.checked.sets[node.set]
            return lambda ctx: None if (v := many(ctx)) is None else found(
                any(x in members for x in v), v)  # type: ignore[operator]
        if isinstance(node, ast.Contains):
            many, element = self.value(node.many), self.value(node.value)
            return lambda ctx: None if (v := many(ctx)) is None or (e := element(ctx)) is None else found(e in v, v)
        if isinstance(node, ast.Fact):
            return self.value(node)
        raise TypeError(f"not a condition: {node!r}")

    def value(self, node: ast.Expr) -> Value:
        """Compile an expression that yields a value (a fact, a literal or a shifted date)."""
        if isinstance(node, ast.Fact):
            name = node.name
            return lambda ctx: fact_of(ctx, name)
        if isinstance(node, ast.Literal):
            constant = self.checked.values[node]
            return lambda ctx: constant
        if isinstance(node, ast.Shift):
            base, sign, amount, unit = self.value(node.base), node.sign, node.amount, node.unit
            return lambda ctx: None if (d := base(ctx)) is None else shift_date(d, sign, amount, unit)
        return self.test(node)

    def _compare(self, node: ast.Compare) -> Test:
        op = _OPS[node.op]
        left, right = node.left, node.right
        if isinstance(right, ast.Literal) and isinstance(left, ast.Fact):
            name, constant = left.name, self.checked.values[right]
            return lambda ctx: None if (v := fact_of(ctx, name)) is None else op(v, constant)
        lhs, rhs = self.value(left), self.value(right)
        return lambda ctx: None if (a := lhs(ctx)) is None or (b := rhs(ctx)) is None else op(a, b)


def found(hit: bool, values: object) -> bool | None:
    """A membership test's value: a miss in a set known only in part (:class:`OpenSet`) is unknown."""
    return True if hit else (None if type(values) is OpenSet else False)


def prefixed(values: Iterable[str], prefixes: tuple[str, ...]) -> bool:
    """Whether any of ``values`` starts with one of ``prefixes`` (a plain loop: in generated code it
    costs half a comprehension's setup)."""
    for value in values:
        if value.startswith(prefixes):
            return True
    return False


def _kleene(parts: tuple[Test, ...], dominant: bool) -> Test:
    """Kleene ``and`` (dominant False) or ``or`` (dominant True): the dominant value wins, then unknown."""
    def combined(ctx: Ctx) -> bool | None:
        unknown = False
        for part in parts:
            value = part(ctx)
            if value is dominant:
                return dominant
            if value is None:
                unknown = True
        return None if unknown else not dominant
    return combined
