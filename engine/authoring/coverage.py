"""Rule coverage of test cases: which rules fired and which branches of their conditions ran.

Coverage items, per rule (deduplicated by the rule's place in its file):

* ``fired``: the rule's condition was true, so under hit policy ``first`` it gave the answer;
* for every predicate (a comparison, membership, ``known`` ...): seen ``true`` and seen ``false``;
* for every operand of an ``and`` / ``or``: it ``decided`` the result once (an ``and`` operand
  that was false, an ``or`` operand that was true).

Measurement reads the ``trace`` of explained responses, which the engine builds through its rule
sink and the predicate-level closures that :mod:`engine.evaluation.trace` compiles on demand, so the normal
evaluation path is untouched. The and/or decisions are recomputed from the predicate values with
the same short-circuit order as the compiled conditions.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from engine.language import ast
from engine.loading.locate import condition_location
from engine.language.parser import parse_condition
from engine.policy import Location, Policy, Rule
from engine.language.render import render

_VALUES = {"true": True, "false": False, "unknown": None}


@dataclass(frozen=True)
class Item:
    """One thing a test suite should exercise."""

    rule: str  # str(rule.location): the key shared by every compiled copy of the rule
    kind: str  # fired | true | false | decides-and | decides-or
    pos: ast.Pos
    text: str


@dataclass
class _RuleInfo:
    rule: Rule
    expr: ast.Expr
    leaves: dict[ast.Pos, ast.Expr] = field(default_factory=dict)


@dataclass(frozen=True)
class Uncovered:
    """An item no test exercised, located in its file."""

    location: Location
    code: str
    message: str


@dataclass(frozen=True)
class Summary:
    """Totals of one coverage run."""

    rules: int
    rules_fired: int
    branches: int
    branches_covered: int
    uncovered: tuple[Uncovered, ...]

    @property
    def percent(self) -> float:
        """Covered items (rules fired plus branches) over all items, in percent; 100 when empty."""
        total = self.rules + self.branches
        return 100.0 if total == 0 else 100.0 * (self.rules_fired + self.branches_covered) / total

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready totals and the uncovered items."""
        return {"percent": round(self.percent, 1), "rules": self.rules, "rules_fired": self.rules_fired,
                "branches": self.branches, "branches_covered": self.branches_covered,
                "uncovered": [{"location": str(u.location), "code": u.code, "message": u.message}
                              for u in self.uncovered]}


_DECIDES = {"decides-and": "was never the operand that made its `and` false",
            "decides-or": "was never the operand that made its `or` true"}


def _decides(node: ast.And | ast.Or) -> str:
    """The item kind of an operand that decides ``node``: false for an ``and``, true for an ``or``."""
    return "decides-and" if isinstance(node, ast.And) else "decides-or"


def _leaves_and_items(key: str, expr: ast.Expr, info: _RuleInfo, items: list[Item]) -> None:
    if isinstance(expr, (ast.And, ast.Or)):
        for operand in expr.operands:
            items.append(Item(key, _decides(expr), operand.pos, render(operand)))
            _leaves_and_items(key, operand, info, items)
    elif isinstance(expr, ast.Not):
        _leaves_and_items(key, expr.operand, info, items)
    else:
        info.leaves[expr.pos] = expr
        if not isinstance(expr, ast.Literal):
            items += [Item(key, "true", expr.pos, render(expr)), Item(key, "false", expr.pos, render(expr))]


class Coverage:
    """Accumulates coverage of the rules of ``policies`` (those in files under ``within``, if given)."""

    def __init__(self, policies: Iterable[Policy], within: str | Path | None = None) -> None:
        self._rules: dict[str, _RuleInfo] = {}
        self.items: list[Item] = []
        self.seen: set[Item] = set()
        scope = Path(within).resolve() if within is not None else None
        for policy in policies:
            for rule in policy.rules:
                key = str(rule.location)
                if key in self._rules or scope and not Path(rule.location.path).resolve().is_relative_to(scope):
                    continue
                info = _RuleInfo(rule, parse_condition(rule.when))
                self._rules[key] = info
                self.items.append(Item(key, "fired", ast.Pos(1, 1), rule.id))
                _leaves_and_items(key, info.expr, info, self.items)

    def record(self, response: Mapping[str, Any]) -> None:
        """Take the trace of every decision of an explained v1 response into account."""
        for decision in response.get("decisions", ()):
            for entry in decision.get("trace", ()):
                self._record_rule(entry)

    def _record_rule(self, entry: Mapping[str, Any]) -> None:
        key = entry["location"]
        info = self._rules.get(key)
        if info is None:
            return
        if entry["result"] == "true":
            self.seen.add(Item(key, "fired", ast.Pos(1, 1), info.rule.id))
        values = {ast.Pos(p["line"], p["column"]): _VALUES[p["result"]] for p in entry["predicates"]}
        self._walk(key, info.expr, values)

    def _walk(self, key: str, node: ast.Expr, values: dict[ast.Pos, bool | None]) -> bool | None:
        """Re-evaluate ``node`` from its predicates' values, recording what was exercised."""
        if isinstance(node, ast.Not):
            inner = self._walk(key, node.operand, values)
            return None if inner is None else not inner
        if isinstance(node, (ast.And, ast.Or)):
            stop = isinstance(node, ast.Or)  # the value that decides: true for or, false for and
            unknown = False
            for operand in node.operands:
                value = self._walk(key, operand, values)
                if value is stop:
                    self.seen.add(Item(key, _decides(node), operand.pos, render(operand)))
                    return stop
                unknown = unknown or value is None
            return None if unknown else not stop
        value = values.get(node.pos)
        if value is not None and not isinstance(node, ast.Literal):
            self.seen.add(Item(key, "true" if value else "false", node.pos, render(node)))
        return value

    def summary(self) -> Summary:
        """Totals and the uncovered items, in file order."""
        rules = [i for i in self.items if i.kind == "fired"]
        branches = [i for i in self.items if i.kind != "fired"]
        uncovered = [self._uncovered(i) for i in self.items if i not in self.seen]
        uncovered.sort(key=lambda u: (u.location.path, u.location.line, u.location.column))
        return Summary(len(rules), sum(i in self.seen for i in rules), len(branches),
                       sum(i in self.seen for i in branches), tuple(uncovered))

    def _uncovered(self, item: Item) -> Uncovered:
        rule = self._rules[item.rule].rule
        if item.kind == "fired":
            return Uncovered(rule.location, "C-rule", f"rule '{rule.id}' never fired")
        where = condition_location(rule, item.pos.line, item.pos.column)
        what = _DECIDES.get(item.kind, f"never {item.kind}")
        return Uncovered(where, "C-branch", f"rule '{rule.id}': `{item.text}` {what}")
