"""Typed syntax tree of a condition; every node carries its line and column in the condition."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Union


@dataclass(frozen=True)
class Pos:
    """A 1-based position inside the condition text."""

    line: int
    column: int


@dataclass(frozen=True)
class Literal:
    """A constant: ``kind`` is number, string, date or bool; ``text`` is the source spelling."""

    pos: Pos
    kind: str
    text: str


@dataclass(frozen=True)
class Fact:
    """A reference to a fact of the request, e.g. ``patient.age``."""

    pos: Pos
    name: str


@dataclass(frozen=True)
class Known:
    """``known(fact)``: true when the request carries the fact."""

    pos: Pos
    fact: Fact


@dataclass(frozen=True)
class Shift:
    """Date arithmetic: ``base + 30 days``."""

    pos: Pos
    base: "Expr"
    sign: int
    amount: int
    unit: str


@dataclass(frozen=True)
class SetItem:
    """One member of a set literal, interpreted later by the type of the tested fact."""

    pos: Pos
    text: str
    quoted: bool


@dataclass(frozen=True)
class SetLiteral:
    """``{a, b, ...}``."""

    pos: Pos
    items: tuple[SetItem, ...]


@dataclass(frozen=True)
class ValueSetRef:
    """A named value set of the policy."""

    pos: Pos
    name: str


SetRef = Union[SetLiteral, ValueSetRef]


@dataclass(frozen=True)
class Compare:
    """``left <op> right``."""

    pos: Pos
    op: str
    left: "Expr"
    right: "Expr"


@dataclass(frozen=True)
class Member:
    """``item in set`` (or ``not in`` when ``negated``)."""

    pos: Pos
    item: "Expr"
    set: SetRef
    negated: bool


@dataclass(frozen=True)
class Overlaps:
    """``many overlaps set``: some element of a multi-valued fact is in the set."""

    pos: Pos
    many: "Expr"
    set: SetRef


@dataclass(frozen=True)
class Contains:
    """``many contains value``."""

    pos: Pos
    many: "Expr"
    value: "Expr"


@dataclass(frozen=True)
class And:
    """Kleene conjunction of two or more operands."""

    pos: Pos
    operands: tuple["Expr", ...]


@dataclass(frozen=True)
class Or:
    """Kleene disjunction of two or more operands."""

    pos: Pos
    operands: tuple["Expr", ...]


@dataclass(frozen=True)
class Not:
    """Kleene negation."""

    pos: Pos
    operand: "Expr"


Expr = Union[Literal, Fact, Known, Shift, Compare, Member, Overlaps, Contains, And, Or, Not]


def facts_of(node: object) -> frozenset[str]:
    """Fact names whose absence can make the expression unknown (``known(x)`` never is)."""
    if isinstance(node, Fact):
        return frozenset({node.name})
    if isinstance(node, Known):
        return frozenset()
    found: set[str] = set()
    for child in _children(node):
        found |= facts_of(child)
    return frozenset(found)


def value_sets_of(node: object) -> tuple[str, ...]:
    """Names of the value sets the expression refers to, sorted."""
    if isinstance(node, ValueSetRef):
        return (node.name,)
    return tuple(sorted({name for child in _children(node) for name in value_sets_of(child)}))


def too_deep(node: object, limit: int) -> object | None:
    """The first node lying deeper than ``limit`` levels below ``node`` (the root is level 1), or
    None; walked without recursion, so any depth can be measured."""
    pending = [(node, 1)]
    while pending:
        current, level = pending.pop()
        if level > limit:
            return current
        pending.extend((child, level + 1) for child in _children(current))
    return None


def _children(node: object) -> Iterator[object]:
    for value in vars(node).values() if hasattr(node, "__dict__") else ():
        for child in value if isinstance(value, tuple) else (value,):
            if hasattr(child, "pos"):
                yield child
