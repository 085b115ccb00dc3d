"""Reasoning about conditions without a request: constant folding and implication.

Both are sound under Kleene logic and deliberately incomplete: :func:`fold` only answers when a
condition has one value for every request the policy can see (its payer, its dates of service, the
codes it governs, and facts every request carries), and :func:`implies` only when the structure of
two conditions proves it (shared conjuncts, subsets, tighter bounds).
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Iterator, Mapping

from engine.language import ast
from engine.language.checker import Checked, Checker
from engine.language.codes import CodeSet
from engine.language.facts import ALWAYS
from engine.language.parser import parse_condition
from engine.language.render import render

_FLIP = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "==": "==", "!=": "!="}
#: Ranges longer than this are not expanded when comparing sets.
_EXPAND = 5000


@dataclass(frozen=True)
class Scope:
    """What every request a policy decides has in common."""

    payer: str
    start: dt.date
    end: dt.date | None
    codes: frozenset[str] | None  # the governed codes, when they are few and exact


@dataclass(frozen=True)
class Analysed:
    """A parsed and checked condition, with the value sets of its policy."""

    expr: ast.Expr
    checked: Checked = field(compare=False)
    value_sets: Mapping[str, tuple[str, ...]] = field(compare=False)

    @property
    def used_value_sets(self) -> frozenset[str]:
        """Names of the value sets the condition reads."""
        return frozenset(n.name for n in walk(self.expr) if isinstance(n, ast.ValueSetRef))

    def setting_literals(self) -> Iterator[tuple[ast.Expr, str, str]]:
        """(node, fact, literal text) for every string compared with, or tested against, a fact."""
        for node in walk(self.expr):
            if isinstance(node, ast.Compare):
                fact, lit = _fact_literal(node)
                if fact and lit is not None and lit.kind == "string":
                    yield lit, fact, lit.text
            elif isinstance(node, (ast.Member, ast.Overlaps)):
                subject = node.item if isinstance(node, ast.Member) else node.many
                if isinstance(subject, ast.Fact) and isinstance(node.set, ast.ValueSetRef):
                    for text in self.value_sets.get(node.set.name, ()):
                        yield node.set, subject.name, text
                elif isinstance(subject, ast.Fact):
                    for item in node.set.items:
                        yield item, subject.name, item.text
            elif isinstance(node, ast.Contains) and isinstance(node.many, ast.Fact):
                if isinstance(node.value, ast.Literal) and node.value.kind == "string":
                    yield node.value, node.many.name, node.value.text


def walk(node: object) -> Iterator[Any]:
    """The node and every node under it, depth first in source order."""
    yield node
    for value in vars(node).values() if hasattr(node, "__dict__") else ():
        for child in value if isinstance(value, tuple) else (value,):
            if hasattr(child, "pos"):
                yield from walk(child)


@lru_cache(maxsize=8192)
def _analyse(when: str, value_sets: tuple[tuple[str, tuple[str, ...]], ...]) -> Analysed:
    expr = parse_condition(when)
    sets = dict(value_sets)
    return Analysed(expr, Checker(sets).check(expr), sets)


def analyse(when: str, value_sets: Mapping[str, tuple[str, ...]]) -> Analysed:
    """Parse and check a condition that already loaded once (so it cannot fail)."""
    return _analyse(when, tuple(sorted(value_sets.items())))


def _fact_literal(node: ast.Compare) -> tuple[str | None, ast.Literal | None]:
    if isinstance(node.left, ast.Fact) and isinstance(node.right, ast.Literal):
        return node.left.name, node.right
    if isinstance(node.right, ast.Fact) and isinstance(node.left, ast.Literal):
        return node.right.name, node.left
    return None, None


def _bound(node: ast.Compare, checked: Checked) -> tuple[str, str, Any] | None:
    """``(fact, op, value)`` with the fact on the left, or None when it is not fact-vs-literal."""
    fact, lit = _fact_literal(node)
    if fact is None or lit is None or lit not in checked.values:
        return None
    op = node.op if node.left is not lit else _FLIP[node.op]
    return fact, op, checked.values[lit]


def _dates(scope: Scope) -> str:
    return f" (the policy is in force from {scope.start} to {scope.end or 'open'})"


def _fold_compare(node: ast.Compare, info: Analysed, scope: Scope) -> tuple[bool, str] | None:
    bound = _bound(node, info.checked)
    if bound is None:
        return None
    fact, op, value = bound
    if fact == "date_of_service":
        interval = _interval(op, value)
        if interval is None:
            return None
        whole = (scope.start, False, scope.end, False)
        if _within(whole, interval):
            return True, _dates(scope)
        if _disjoint(whole, interval):
            return False, _dates(scope)
    elif fact == "payer" and op in ("==", "!="):
        return (scope.payer == value) == (op == "=="), f" (the policy's payer is {scope.payer})"
    elif fact == "code" and op in ("==", "!=") and scope.codes is not None:
        hits = {c == value for c in scope.codes}
        if len(hits) == 1:
            return hits.pop() == (op == "=="), " for every code the policy governs"
    return None


def _fold_member(node: ast.Member, info: Analysed, scope: Scope) -> tuple[bool, str] | None:
    if not isinstance(node.item, ast.Fact):
        return None
    members = info.checked.sets.get(node.set)
    if node.item.name == "payer":
        return (scope.payer in members) != node.negated, f" (the policy's payer is {scope.payer})"  # type: ignore[operator]
    if node.item.name == "code" and scope.codes is not None:
        hits = {c in members for c in scope.codes}  # type: ignore[operator]
        if len(hits) == 1:
            return hits.pop() != node.negated, " for every code the policy governs"
    return None


def fold(node: ast.Expr, info: Analysed, scope: Scope) -> tuple[bool, str] | None:
    """``(value, why)`` when ``node`` has that value for every request in ``scope``, else None."""
    if isinstance(node, ast.Literal) and node.kind == "bool":
        return node.text == "true", ""
    if isinstance(node, ast.Known):
        return (True, f" (every request carries {node.fact.name})") if node.fact.name in ALWAYS else None
    if isinstance(node, ast.Not):
        inner = fold(node.operand, info, scope)
        return None if inner is None else (not inner[0], inner[1])
    if isinstance(node, (ast.And, ast.Or)):
        decisive = isinstance(node, ast.Or)
        parts = [fold(o, info, scope) for o in node.operands]
        for part in parts:
            if part is not None and part[0] is decisive:
                return part
        if all(p is not None for p in parts):
            return not decisive, parts[0][1]  # type: ignore[index]
        return _contradiction(node, info) if isinstance(node, ast.And) else None
    if isinstance(node, ast.Compare):
        return _fold_compare(node, info, scope)
    if isinstance(node, ast.Member):
        return _fold_member(node, info, scope)
    return None


def _contradiction(node: ast.And, info: Analysed) -> tuple[bool, str] | None:
    """``x == a and x == b`` with a != b, or ``p and not p``."""
    equal: dict[str, Any] = {}
    rendered = {render(o) for o in node.operands}
    for operand in node.operands:
        if isinstance(operand, ast.Not) and render(operand.operand) in rendered:
            return False, f" (it requires both `{render(operand.operand)}` and its negation)"
        bound = _bound(operand, info.checked) if isinstance(operand, ast.Compare) else None
        if bound and bound[1] == "==":
            if bound[0] in equal and equal[bound[0]] != bound[2]:
                return False, f" ({bound[0]} cannot equal two different values)"
            equal[bound[0]] = bound[2]
    return None


Interval = tuple[Any, bool, Any, bool]  # low, low is strict, high, high is strict (None: unbounded)


def _interval(op: str, value: Any) -> Interval | None:
    return {"==": (value, False, value, False), "<": (None, False, value, True), "<=": (None, False, value, False),
            ">": (value, True, None, False), ">=": (value, False, None, False)}.get(op)


def _within(a: Interval, b: Interval) -> bool:
    """Every value of interval ``a`` is in ``b``."""
    (alo, alo_s, ahi, ahi_s), (blo, blo_s, bhi, bhi_s) = a, b
    low_ok = blo is None or (alo is not None and (alo > blo or (alo == blo and (alo_s or not blo_s))))
    high_ok = bhi is None or (ahi is not None and (ahi < bhi or (ahi == bhi and (ahi_s or not bhi_s))))
    return low_ok and high_ok


def _disjoint(a: Interval, b: Interval) -> bool:
    """No value is in both intervals."""
    def below(x: Interval, y: Interval) -> bool:  # x lies entirely below y
        xhi, xhi_s, ylo, ylo_s = x[2], x[3], y[0], y[1]
        return xhi is not None and ylo is not None and (xhi < ylo or (xhi == ylo and (xhi_s or ylo_s)))
    return below(a, b) or below(b, a)


def _subset(a: object, b: object) -> bool:
    """Every member of resolved set ``a`` is a member of ``b``."""
    if isinstance(a, frozenset):
        return all(x in b for x in a)  # type: ignore[operator]
    if not isinstance(a, CodeSet):
        return False
    if any(len(r) > _EXPAND for r in a.ranges):
        return False
    prefixes_ok = all(isinstance(b, CodeSet) and any(p.startswith(q) for q in b.prefixes) for p in a.prefixes)
    return prefixes_ok and all(x in b for x in a.exact) and all(c in b for r in a.ranges for c in r.codes())  # type: ignore[operator]


def _leaf_implies(a: ast.Expr, ca: Checked, b: ast.Expr, cb: Checked) -> bool:
    if isinstance(a, ast.Member) and isinstance(b, ast.Member) and render(a.item) == render(b.item) \
            and a.negated == b.negated:
        sa, sb = ca.sets[a.set], cb.sets[b.set]
        return _subset(sb, sa) if a.negated else _subset(sa, sb)
    if isinstance(a, ast.Overlaps) and isinstance(b, ast.Overlaps) and render(a.many) == render(b.many):
        return _subset(ca.sets[a.set], cb.sets[b.set])
    if isinstance(a, ast.Contains) and isinstance(b, ast.Overlaps) and render(a.many) == render(b.many) \
            and isinstance(a.value, ast.Literal) and a.value in ca.values:
        return ca.values[a.value] in cb.sets[b.set]  # type: ignore[operator]
    if isinstance(a, ast.Compare) and isinstance(b, ast.Compare):
        ba, bb = _bound(a, ca), _bound(b, cb)
        if not (ba and bb and ba[0] == bb[0]):
            return False
        ia = _interval(ba[1], ba[2])
        if ia is None:
            return False
        if bb[1] == "!=":
            return _disjoint(ia, (bb[2], False, bb[2], False))
        ib = _interval(bb[1], bb[2])
        return ib is not None and _within(ia, ib)
    return False


def _implies(a: ast.Expr, ca: Checked, b: ast.Expr, cb: Checked) -> bool:
    if render(a) == render(b):
        return True
    if isinstance(b, ast.Or) and any(_implies(a, ca, x, cb) for x in b.operands):
        return True
    if isinstance(a, ast.And) and any(_implies(x, ca, b, cb) for x in a.operands):
        return True
    if isinstance(b, ast.And):
        return all(_implies(a, ca, x, cb) for x in b.operands)
    if isinstance(a, ast.Or):
        return all(_implies(x, ca, b, cb) for x in a.operands)
    return _leaf_implies(a, ca, b, cb)


def implies(a: Analysed, b: Analysed) -> bool:
    """True when ``a`` being true proves ``b`` true (both of one policy)."""
    return _implies(a.expr, a.checked, b.expr, b.checked)
