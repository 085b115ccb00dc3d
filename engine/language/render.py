"""Render a condition syntax tree back to canonical text (for traces and lint messages)."""
from __future__ import annotations

from engine.language import ast


def render(node: object) -> str:
    """Canonical text of an expression, fully parenthesised where precedence needs it."""
    if isinstance(node, ast.Fact):
        return node.name
    if isinstance(node, ast.Literal):
        return _quote(node.text) if node.kind == "string" else node.text
    if isinstance(node, ast.Known):
        return f"known({node.fact.name})"
    if isinstance(node, ast.Shift):
        return f"{render(node.base)} {'+' if node.sign > 0 else '-'} {node.amount} {node.unit}s"
    if isinstance(node, ast.SetLiteral):
        return "{" + ", ".join(_quote(i.text) if i.quoted else i.text for i in node.items) + "}"
    if isinstance(node, ast.ValueSetRef):
        return node.name
    if isinstance(node, ast.Compare):
        return f"{render(node.left)} {node.op} {render(node.right)}"
    if isinstance(node, ast.Member):
        return f"{render(node.item)} {'not in' if node.negated else 'in'} {render(node.set)}"
    if isinstance(node, ast.Overlaps):
        return f"{render(node.many)} overlaps {render(node.set)}"
    if isinstance(node, ast.Contains):
        return f"{render(node.many)} contains {render(node.value)}"
    if isinstance(node, ast.Not):
        return f"not {_wrap(node.operand, (ast.And, ast.Or))}"
    if isinstance(node, ast.And):
        return " and ".join(_wrap(o, (ast.Or,)) for o in node.operands)
    if isinstance(node, ast.Or):
        return " or ".join(render(o) for o in node.operands)
    raise TypeError(f"cannot render {node!r}")


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _wrap(node: object, loose: tuple[type, ...]) -> str:
    text = render(node)
    return f"({text})" if isinstance(node, loose) else text
