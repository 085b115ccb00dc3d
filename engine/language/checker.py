"""Type-check a condition against the fact catalogue and resolve its sets.

The checker proves, at load time, that every fact exists, that operands have compatible types and
that every literal and set member is well formed for the type it is compared with. Its output,
:class:`Checked`, carries the literal values and resolved sets the compiler needs.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

from engine.language import ast
from engine.language.codes import CPT, HCPCS, ICD10, CodeError, CodeSet, check_code, parse_code_set
from engine.errors import ConditionError, did_you_mean
from engine.language.facts import BOOL, CODE, DATE, FACTS, ICD, NUMBER, STRING, FactSpec
from engine.language.render import render

_ORDERED = {NUMBER, DATE}
#: Longest duration a date may be shifted by, in years (or as many months, weeks or days).
MAX_DURATION_YEARS = 300
_PER_YEAR = {"day": 366, "week": 53, "month": 12, "year": 1}
_CODE_SYSTEMS = {CODE: (CPT, HCPCS), ICD: (ICD10,)}
#: How a quoted literal must look to be meant as a number or a date.
_LITERAL_SHAPES = {NUMBER: re.compile(r"\d+(\.\d+)?"), DATE: re.compile(r"\d{4}-\d{2}-\d{2}")}


@dataclass
class Checked:
    """Result of checking one condition: node types, literal values and resolved sets."""

    types: dict[ast.Expr, str] = field(default_factory=dict)
    values: dict[ast.Literal, object] = field(default_factory=dict)
    sets: dict[object, object] = field(default_factory=dict)


def _error(node: object, code: str, message: str) -> ConditionError:
    pos: ast.Pos = node.pos  # type: ignore[attr-defined]
    return ConditionError(code, message, pos.line, pos.column)


def literal_value(text: str, type_: str) -> object:
    """Convert literal text to a value of ``type_``; raise ValueError/CodeError when it does not fit."""
    if type_ == NUMBER:
        return float(text)
    if type_ == DATE:
        return dt.date.fromisoformat(text)
    if type_ in _CODE_SYSTEMS:
        return check_code(text, _CODE_SYSTEMS[type_])
    if type_ == STRING:
        return text
    raise ValueError(f"no literal of type {type_}")


def resolve_set(items: Sequence[str], type_: str) -> object:
    """Build the membership set for members ``items`` tested against values of ``type_``."""
    if type_ in _CODE_SYSTEMS:
        return parse_code_set(list(items), _CODE_SYSTEMS[type_])
    if type_ == STRING:
        exact = frozenset(i for i in items if not i.endswith("*"))
        prefixes = tuple(i[:-1] for i in items if i.endswith("*"))
        return CodeSet(exact, (), prefixes) if prefixes else exact
    if type_ in (NUMBER, DATE):
        return frozenset(literal_value(i, type_) for i in items)
    raise ValueError(f"values of type {type_} cannot be tested for membership")


def _subject(node: ast.Expr | None, type_: str) -> str:
    """``node`` named with its type, for a message: "patient.age is a number (whole years ...)"."""
    if isinstance(node, ast.Fact) and node.name in FACTS:
        spec = FACTS[node.name]
        return f"{node.name} is a {spec.type_name}" + (f" ({spec.doc})" if spec.doc else "")
    return f"this is a {type_}" if node is None else f"`{render(node)}` is a {type_}"


def _retyped(node: ast.Literal, type_: str) -> ast.Literal | None:
    """``node`` written as a literal of ``type_`` (``"65"`` as 65, 22 as ``"22"``), if its text fits."""
    if type_ == STRING and node.kind == "number":
        return ast.Literal(node.pos, "string", node.text)
    shape = _LITERAL_SHAPES.get(type_)
    if shape is not None and node.kind == "string" and shape.fullmatch(node.text):
        return ast.Literal(node.pos, "number" if type_ == NUMBER else "date", node.text)
    return None


class Checker:
    """Checks conditions of one policy, whose named value sets are ``value_sets``."""

    def __init__(self, value_sets: Mapping[str, Sequence[str]] | None = None) -> None:
        self.value_sets = dict(value_sets or {})
        self.used_value_sets: set[str] = set()

    def check(self, expr: ast.Expr) -> Checked:
        """Check a whole condition, which must be boolean."""
        out = Checked()
        if self._type(expr, out) != BOOL:
            raise _error(expr, "E-type", f"a condition must be true or false, not a {out.types[expr]}")
        return out

    def _type(self, node: ast.Expr, out: Checked) -> str:
        type_ = self._infer(node, out)
        out.types[node] = type_
        return type_

    def _infer(self, node: ast.Expr, out: Checked) -> str:  # noqa: C901 - one branch per node kind
        if isinstance(node, ast.Fact):
            return self._fact(node).type_name
        if isinstance(node, ast.Literal):
            if node.kind == "bool":
                out.values[node] = node.text == "true"
                return BOOL
            return "literal"  # typed by the other side of its comparison
        if isinstance(node, ast.Known):
            self._fact(node.fact)
            return BOOL
        if isinstance(node, (ast.And, ast.Or)):
            for operand in node.operands:
                self._expect_bool(operand, out)
            return BOOL
        if isinstance(node, ast.Not):
            self._expect_bool(node.operand, out)
            return BOOL
        if isinstance(node, ast.Shift):
            base = self._type(node.base, out)
            if base == "literal":
                base = self._literal(node.base, DATE, out)  # type: ignore[arg-type]
            if base != DATE:
                raise _error(node, "E-type", f"only dates can be shifted by a duration, not a {base}")
            if node.amount > MAX_DURATION_YEARS * _PER_YEAR[node.unit]:
                raise _error(node, "E-duration-too-long", f"{node.amount} {node.unit}s is longer than "
                                                          f"the limit of {MAX_DURATION_YEARS} years")
            return DATE
        if isinstance(node, ast.Compare):
            return self._compare(node, out)
        if isinstance(node, ast.Member):
            item = self._scalar(node.item, out, "in")
            out.sets[node.set] = self._set(node.set, item)
            return BOOL
        if isinstance(node, ast.Overlaps):
            element = self._many(node.many, out, "overlaps")
            out.sets[node.set] = self._set(node.set, element)
            return BOOL
        if isinstance(node, ast.Contains):
            element = self._many(node.many, out, "contains")
            value = self._type(node.value, out)
            if value == "literal":
                self._literal(node.value, element, out, node.many, lambda fixed: dataclasses.replace(node, value=fixed))  # type: ignore[arg-type]
            elif value != element:
                raise _error(node.value, "E-type", f"a set of {element} cannot contain a {value}")
            return BOOL
        raise _error(node, "E-internal", f"unsupported expression {type(node).__name__}")

    def _fact(self, node: ast.Fact) -> FactSpec:
        spec = FACTS.get(node.name)
        if spec is None:
            raise _error(node, "E-unknown-fact", f"unknown fact '{node.name}'{did_you_mean(node.name, FACTS)}")
        return spec

    def _expect_bool(self, node: ast.Expr, out: Checked) -> None:
        type_ = self._type(node, out)
        if type_ != BOOL:
            what = "a literal" if type_ == "literal" else f"a {type_}"
            raise _error(node, "E-type", f"expected a condition (true or false), found {what}")

    def _scalar(self, node: ast.Expr, out: Checked, op: str) -> str:
        type_ = self._type(node, out)
        if type_.startswith("set of "):
            raise _error(node, "E-type", f"{_subject(node, type_)}, and '{op}' tests a single value; "
                                         f"use 'overlaps' (any of a set) or 'contains' (one value)")
        if type_ in ("literal", BOOL):
            raise _error(node, "E-type", f"the left side of '{op}' must be a fact")
        return type_

    def _many(self, node: ast.Expr, out: Checked, op: str) -> str:
        type_ = self._type(node, out)
        if not type_.startswith("set of "):
            raise _error(node, "E-type", f"'{op}' needs a multi-valued fact, but this is a {type_}")
        return type_.removeprefix("set of ")

    def _literal(self, node: ast.Literal, type_: str, out: Checked, other: ast.Expr | None = None,
                 rebuild: Callable[[ast.Literal], ast.Expr] | None = None) -> str:
        """Type ``node`` as ``type_``, the type of ``other``; ``rebuild`` puts a corrected literal back
        into the expression, to show the fix in the message."""
        if ((node.kind == "date") != (type_ == DATE) and type_ != STRING or node.kind == "string" and type_ in _ORDERED
                or node.kind == "number" and type_ == STRING):
            fixed = _retyped(node, type_)
            fix = (f"write `{render(rebuild(fixed))}`" if fixed and rebuild
                   else f"compare it with a {type_}" if type_ in _ORDERED else "quote the value")
            raise _error(node, "E-type", f"{_subject(other, type_)}, but {render(node)} is a {node.kind} "
                                         f"literal and cannot be compared with it; {fix}")
        try:
            out.values[node] = literal_value(node.text, type_)
        except (ValueError, CodeError) as exc:
            raise _error(node, "E-literal", f"'{node.text}' is not a valid {type_}: {exc}") from None
        out.types[node] = type_
        return type_

    def _compare(self, node: ast.Compare, out: Checked) -> str:
        left, right = self._type(node.left, out), self._type(node.right, out)
        if left == "literal" and right == "literal":
            raise _error(node, "E-type", "a comparison needs at least one fact")
        for many, value in ((node.left, right), (node.right, left)):
            type_ = out.types[many]
            if type_.startswith("set of ") and value == "literal":
                other = node.right if many is node.left else node.left
                raise _error(node, "E-type", f"{_subject(many, type_)}, so '{node.op}' does not apply; write "
                                             f"`{render(ast.Contains(node.pos, many, other))}` (one value) or "
                                             f"`{render(many)} overlaps {{...}}` (any of a set)")
        if left == "literal":
            left = self._literal(node.left, right, out, node.right,  # type: ignore[arg-type]
                                 lambda fixed: dataclasses.replace(node, left=fixed))
        if right == "literal":
            right = self._literal(node.right, left, out, node.left,  # type: ignore[arg-type]
                                  lambda fixed: dataclasses.replace(node, right=fixed))
        if left != right:
            raise _error(node, "E-type", f"cannot compare a {left} with a {right}")
        if left.startswith("set of ") or left == BOOL:
            raise _error(node, "E-type", f"'{node.op}' does not apply to a {left}")
        if node.op not in ("==", "!=") and left not in _ORDERED:
            raise _error(node, "E-type", f"'{node.op}' needs numbers or dates, not {left}s")
        return BOOL

    def _set(self, ref: ast.SetRef, type_: str) -> object:
        if isinstance(ref, ast.ValueSetRef):
            if ref.name not in self.value_sets:
                raise _error(ref, "E-unknown-value-set",
                             f"value set '{ref.name}' is not defined{did_you_mean(ref.name, self.value_sets)}")
            self.used_value_sets.add(ref.name)
            try:
                return resolve_set(self.value_sets[ref.name], type_)
            except (ValueError, CodeError) as exc:
                raise _error(ref, "E-literal", f"value set '{ref.name}' used as a set of {type_}: {exc}") from None
        for item in ref.items:
            try:
                resolve_set([item.text], type_)
            except (ValueError, CodeError) as exc:
                raise _error(item, "E-literal", f"'{item.text}' is not a valid {type_}: {exc}") from None
        return resolve_set([item.text for item in ref.items], type_)
