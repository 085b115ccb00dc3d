"""What is left of a condition once some facts are known: partial evaluation under Kleene logic.

A predicate whose facts are all given (or known to be absent) is decided by the same closures
evaluation uses (:mod:`engine.language.compiler`); the others stay as they are, and ``and`` / ``or`` /
``not`` fold around them. The result is True, False, or the residual syntax tree, which
:func:`spelled` readies for people by writing each value set out as its values.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from engine.language import ast
from engine.language.compiler import Compiler, Test
from engine.language.logic import Analysed


class Partial:
    """Partial evaluation of one policy's conditions for a fixed set of given facts.

    ``given`` maps fact names to values (as a request's line carries them); ``absent`` names facts
    known to be missing (``known(x)`` is then false). Any other fact may still come either way."""

    def __init__(self, given: Mapping[str, Any], absent: frozenset[str] = frozenset()) -> None:
        self.given = dict(given)
        self.absent = absent
        self._settled = frozenset(self.given) | absent
        self._tests: dict[tuple[int, int], Test] = {}

    def of(self, info: Analysed) -> "bool | ast.Expr":
        """The residual of the analysed condition ``info``."""
        return self._residual(info.expr, info)

    def _leaf(self, node: ast.Expr, info: Analysed) -> "bool | ast.Expr":
        if isinstance(node, ast.Known):
            name = node.fact.name
            if name in self.given:
                return self.given[name] is not None
            return False if name in self.absent else node
        if not ast.facts_of(node) <= self._settled:
            return node
        key = (id(info), id(node))
        test = self._tests.get(key)
        if test is None:
            test = self._tests[key] = Compiler(info.checked).test(node)
        value = test(self.given)
        return node if value is None else value

    def _residual(self, node: ast.Expr, info: Analysed) -> "bool | ast.Expr":
        if isinstance(node, ast.Not):
            inner = self._residual(node.operand, info)
            return (not inner) if isinstance(inner, bool) else ast.Not(node.pos, inner)
        if isinstance(node, (ast.And, ast.Or)):
            decisive = isinstance(node, ast.Or)  # the value that settles the whole
            kept = []
            for operand in node.operands:
                part = self._residual(operand, info)
                if part is decisive:
                    return decisive
                if not isinstance(part, bool):
                    kept.append(part)
            if not kept:
                return not decisive
            return kept[0] if len(kept) == 1 else type(node)(node.pos, tuple(kept))
        return self._leaf(node, info)


def spelled(node: Any, value_sets: Mapping[str, tuple[str, ...]]) -> Any:
    """``node`` with every value set reference replaced by the set of its values (for readers who
    do not have the policy file at hand)."""
    if isinstance(node, ast.ValueSetRef):
        items = tuple(ast.SetItem(node.pos, value, True) for value in value_sets.get(node.name, ()))
        return ast.SetLiteral(node.pos, items)
    if not dataclasses.is_dataclass(node):
        return node
    changes = {}
    for field in dataclasses.fields(node):
        value = getattr(node, field.name)
        if isinstance(value, tuple):
            changes[field.name] = tuple(spelled(v, value_sets) if hasattr(v, "pos") else v for v in value)
        elif hasattr(value, "pos"):
            changes[field.name] = spelled(value, value_sets)
    return dataclasses.replace(node, **changes) if changes else node
