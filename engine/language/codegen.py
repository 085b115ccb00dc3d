"""Compile checked conditions into Python source, one function per policy version's rules.

As template engines compile templates, a policy version's rules become one generated Python
function, compiled the first time the policy decides a line. The source is generated from the
*checked* syntax tree only: every literal is written as ``repr`` of a typed value (a float, an
int, a string or a bool), every date and set is bound to a generated name, every fact
is read under its name in the fact catalogue, and every local name is generated. Nothing of the
rule text reaches the source, so no rule text is ever executed.

Kleene logic (``None`` is unknown) is specialised: facts every request carries
(:data:`engine.language.facts.ALWAYS`) are never unknown, so their predicates, and ``and``/``or`` over
predicates that cannot be unknown, compile to plain two-valued Python.
"""
from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from engine.language import ast
from engine.language.checker import Checked, Checker
from engine.language.codes import CodeSet
from engine.language.compiler import found, prefixed, shift_date
from engine.language.facts import ALWAYS, FACTS, OPEN
from engine.language.parser import parse_condition

Ctx = Mapping[str, Any]
#: A policy version's rules as one function: ``facts -> (index of the deciding rule, or the number
#: of rules for the default; indexes of the rules that were unknown before it; the values of the
#: deciding outcome's documentation conditions)``.
RuleProgram = Callable[[Ctx], "tuple[int, tuple[int, ...], tuple[bool | None, ...]]"]
#: One condition as a function: ``facts -> True | False | None``.
ConditionProgram = Callable[[Ctx], "bool | None"]

_COMPARATORS = {"==": "==", "!=": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">="}
_UNITS = {"day": "day", "week": "week", "month": "month", "year": "year"}
#: Subexpressions nested deeper than this become helper functions (Python limits nesting in source).
_MAX_DEPTH = 24
_NAMESPACE = {"_shift": shift_date, "_found": found, "_prefixed": prefixed,
              "__builtins__": {"any": any, "map": map, "float": float}}


def literal(value: object) -> str:
    """Python source for a typed literal value; anything but a bool, int, float or str is refused."""
    kind = type(value)
    if kind is float and not math.isfinite(value):  # type: ignore[arg-type]
        return f"float({repr(repr(value))})"
    if kind in (bool, int, float, str):
        return repr(value)
    raise TypeError(f"no literal of type {kind.__name__}")


@dataclass
class _Code:
    """An expression's source, whether it can be unknown (None), and how deeply it nests."""

    src: str
    nullable: bool
    depth: int = 1


@dataclass
class _Module:
    """Source of one generated module: helper functions and the constants they name."""

    constants: dict[str, object] = field(default_factory=dict)
    helpers: list[str] = field(default_factory=list)
    temps: int = 0

    def temp(self) -> str:
        self.temps += 1
        return f"_t{self.temps}"

    def constant(self, value: object) -> str:
        name = f"_k{len(self.constants)}"
        self.constants[name] = value
        return name

    def hoist(self, code: _Code) -> _Code:
        """Move a deep subexpression into a helper function of its own."""
        name = f"_h{len(self.helpers)}"
        self.helpers.append(f"def {name}(ctx, get):\n    return {code.src}\n")
        return _Code(f"{name}(ctx, get)", code.nullable)

    def build(self, source: str, name: str) -> Callable[..., Any]:
        """Compile the module; returns its function ``name``, which its namespace then no longer
        holds: the function refers to its namespace, so a generated function is no reference cycle
        (a helper, for a condition nested too deeply, is one) and is freed with its rule set."""
        namespace = {**_NAMESPACE, **self.constants}
        exec(compile("\n".join([*self.helpers, source]), "<covreq policy>", "exec"), namespace)  # noqa: S102 - generated
        return namespace.pop(name)  # type: ignore[no-any-return]


class _Generator:
    """Expressions for the nodes of one checked condition."""

    def __init__(self, checked: Checked, module: _Module) -> None:
        self.checked = checked
        self.module = module

    def expr(self, node: ast.Expr) -> _Code:
        code = self._expr(node)
        return self.module.hoist(code) if code.depth > _MAX_DEPTH else code

    def _expr(self, node: ast.Expr) -> _Code:  # noqa: C901 - one branch per node kind
        if isinstance(node, ast.Literal):
            value = self.checked.values[node]
            if type(value) is dt.date:  # built once, not on every run
                return _Code(self.module.constant(value), False)
            return _Code(literal(value), False)
        if isinstance(node, ast.Fact):
            name = FACTS[node.name].name
            return _Code(f"ctx[{literal(name)}]", False) if name in ALWAYS else _Code(f"get({literal(name)})", True)
        if isinstance(node, ast.Known):
            name = FACTS[node.fact.name].name
            return _Code("True", False) if name in ALWAYS else _Code(f"(get({literal(name)}) is not None)", False)
        if isinstance(node, ast.Not) and isinstance(node.operand, ast.Known) and node.operand.fact.name not in ALWAYS:
            return _Code(f"(get({literal(FACTS[node.operand.fact.name].name)}) is None)", False)
        if isinstance(node, ast.Not):
            inner = self.expr(node.operand)
            if not inner.nullable:
                return _Code(f"(not {inner.src})", False, inner.depth + 1)
            t = self.module.temp()
            return _Code(f"(None if ({t} := {inner.src}) is None else not {t})", True, inner.depth + 1)
        if isinstance(node, (ast.And, ast.Or)):
            return self._kleene([self.expr(o) for o in node.operands], isinstance(node, ast.Or))
        if isinstance(node, ast.Compare):
            op = _COMPARATORS[node.op]
            return self._guarded([self.expr(node.left), self.expr(node.right)], lambda a, b: f"{a} {op} {b}")
        if isinstance(node, ast.Member):
            test = self._member(node.set)
            return self._guarded([self.expr(node.item)], (lambda v: f"not {test(v)}") if node.negated else test)
        if isinstance(node, ast.Overlaps):
            return self._collection(node.many, [], self._overlaps(node.set))
        if isinstance(node, ast.Contains):
            return self._collection(node.many, [self.expr(node.value)], lambda many, e: f"{e} in {many}")
        if isinstance(node, ast.Shift):
            sign, amount, unit = int(node.sign), int(node.amount), _UNITS[node.unit]
            return self._guarded([self.expr(node.base)],
                                 lambda d: f"_shift({d}, {literal(sign)}, {literal(amount)}, {literal(unit)})")
        raise TypeError(f"not a condition: {type(node).__name__}")

    def _parts(self, ref: ast.SetRef) -> tuple[str, str | None, bool]:
        """Generated names for a set: its exact members (a frozenset) and its prefixes (a tuple, or
        None), or, for a set with long code ranges, the set itself (and True)."""
        members = self.checked.sets[ref]
        if not isinstance(members, CodeSet):
            return self.module.constant(members), None, False
        if members.ranges:
            return self.module.constant(members), None, True
        prefixes = self.module.constant(members.prefixes) if members.prefixes else None
        return self.module.constant(members.exact), prefixes, False

    def _member(self, ref: ast.SetRef) -> Callable[[str], str]:
        """Membership of one value (a code or a string: prefixes apply to text) in the set, in C."""
        exact, prefixes, ranged = self._parts(ref)
        if prefixes is None:
            return lambda v: f"({v} in {exact})"
        return lambda v: f"({v} in {exact} or {v}.startswith({prefixes}))"

    def _overlaps(self, ref: ast.SetRef) -> Callable[[str], str]:
        """Whether any element of a multi-valued fact is in the set."""
        exact, prefixes, ranged = self._parts(ref)
        if ranged:
            return lambda v: f"any(map({exact}.__contains__, {v}))"
        if prefixes is None:
            return lambda v: f"(not {exact}.isdisjoint({v}))"
        return lambda v: f"(not {exact}.isdisjoint({v}) or _prefixed({v}, {prefixes}))"

    def _collection(self, many: ast.Expr, others: list[_Code], test: Callable[..., str]) -> _Code:
        """``test`` of a multi-valued fact and ``others``; on a fact the request may carry only in
        part (:data:`engine.language.facts.OPEN`), a miss is unknown (:func:`engine.language.compiler.found`)."""
        code = self.expr(many)
        if not (isinstance(many, ast.Fact) and FACTS[many.name].name in OPEN):
            return self._guarded([code, *others], test)
        t = self.module.temp()
        inner = self._guarded([_Code(t, False), *others], lambda *values: f"_found({test(*values)}, {t})")
        return _Code(f"(None if ({t} := {code.src}) is None else {inner.src})", True, max(code.depth, inner.depth) + 1)

    def _guarded(self, operands: list[_Code], apply: Callable[..., str]) -> _Code:
        """``apply`` to the operands' values, or None when one of them is unknown (left to right)."""
        depth = max(o.depth for o in operands) + 1
        if not any(o.nullable for o in operands):
            return _Code(f"({apply(*(o.src for o in operands))})", False, depth)
        tests, values = [], []
        for operand in operands:
            if operand.nullable:
                t = self.module.temp()
                tests.append(f"({t} := {operand.src}) is None")
                values.append(t)
            else:
                values.append(operand.src)
        return _Code(f"(None if {' or '.join(tests)} else {apply(*values)})", True, depth)

    def _kleene(self, parts: list[_Code], dominant: bool) -> _Code:
        """Kleene ``or`` (dominant True) or ``and`` (dominant False): the dominant value wins, then unknown."""
        depth = max(p.depth for p in parts) + 1
        if not any(p.nullable for p in parts):
            return _Code("(" + (" or " if dominant else " and ").join(p.src for p in parts) + ")", False, depth)
        word, temps, chain = literal(dominant), [], []
        for part in parts:
            if part.nullable:
                t = self.module.temp()
                temps.append(t)
                chain.append(f"{word} if ({t} := {part.src}) is {word} else")
            else:  # a plain bool
                chain.append(f"True if {part.src} else" if dominant else f"False if not {part.src} else")
        unknown = " or ".join(f"{t} is None" for t in temps)
        return _Code(f"({' '.join(chain)} (None if {unknown} else {literal(not dominant)}))", True, depth)


def _checked(text: str, value_sets: Mapping[str, Sequence[str]]) -> tuple[ast.Expr, Checked]:
    expr = parse_condition(text)
    return expr, Checker(value_sets).check(expr)


def condition_code(text: str, value_sets: Mapping[str, Sequence[str]], module: _Module) -> _Code:
    """The expression computing condition ``text`` (already checked at load) inside ``module``."""
    expr, checked = _checked(text, value_sets)
    return _Generator(checked, module).expr(expr)


def rules_source(conditions: Sequence[str], value_sets: Mapping[str, Sequence[str]],
                 documentation: Sequence[Sequence[str]] = ()) -> tuple[str, _Module]:
    """Source of ``rules(ctx)``: the rules tried in order under hit policy ``first`` (see RuleProgram).
    ``documentation`` gives, for each rule's outcome and then the default's, the conditions of its
    documentation items (none when not given), whose values the program answers with."""
    module = _Module()
    outcomes = [*documentation, *[()] * (len(conditions) + 1 - len(documentation))]

    def decided(index: int) -> str:
        states = [condition_code(text, value_sets, module).src for text in outcomes[index]]
        return f"return {literal(index)}, pending, ({''.join(f'{state}, ' for state in states)})"
    body = ["def rules(ctx):", "    get = ctx.get", "    pending = ()"]
    for index, text in enumerate(conditions):
        code = condition_code(text, value_sets, module)
        if not code.nullable:
            body += [f"    if {code.src}:", f"        {decided(index)}"]
            continue
        body += [f"    r = {code.src}",
                 "    if r is True:", f"        {decided(index)}",
                 "    if r is None:", f"        pending += ({literal(index)},)"]
    body.append(f"    {decided(len(conditions))}")
    return "\n".join(body) + "\n", module


def compile_rules(conditions: Sequence[str], value_sets: Mapping[str, Sequence[str]],
                  documentation: Sequence[Sequence[str]] = ()) -> RuleProgram:
    """One function deciding which of the rules ``conditions`` answers (see :data:`RuleProgram`)."""
    source, module = rules_source(conditions, value_sets, documentation)
    return module.build(source, "rules")


def compile_condition(text: str, value_sets: Mapping[str, Sequence[str]]) -> ConditionProgram:
    """One function computing condition ``text`` with Kleene logic."""
    module = _Module()
    source = f"def condition(ctx):\n    get = ctx.get\n    return {condition_code(text, value_sets, module).src}\n"
    return module.build(source, "condition")


def compile_builder(fields: Sequence[str], value: dict[str, Any], holes: Sequence[str] = ()) -> Callable[..., dict[str, Any]]:
    """A function taking one argument per name of ``fields``, then one per name of ``holes``, and
    returning a new object: the ``fields`` first, then a copy of the JSON object ``value`` (new
    lists and objects each call, strings shared) whose ``holes`` keys take the values given."""
    module = _Module()
    names = {name: f"_a{i}" for i, name in enumerate([*fields, *holes])}
    given = [f"{literal(str(f))}: {names[f]}" for f in fields]
    rest = [f"{literal(str(k))}: {names[k] if k in holes else _json_source(v, module)}" for k, v in value.items()]
    source = f"def build({', '.join(names.values())}):\n    return {{{', '.join(given + rest)}}}\n"
    return module.build(source, "build")


def _json_source(item: Any, module: _Module) -> str:
    """Source building a fresh copy of the JSON value ``item``, its strings bound as constants."""
    if isinstance(item, dict):
        return "{" + ", ".join(f"{literal(str(k))}: {_json_source(v, module)}" for k, v in item.items()) + "}"
    if isinstance(item, list):
        return "[" + ", ".join(_json_source(v, module) for v in item) + "]"
    if isinstance(item, str):
        return module.constant(item)
    return "None" if item is None else literal(item)


class Lazy:
    """Generated code compiled on first use: ``run`` is the generated function once it is built.

    Loading only checks conditions; a policy pays for compiling its rules the first time it decides
    a line, so a large tree loads fast and only the policies in use take memory for code. Two threads
    meeting an uncompiled program both compile it and keep either result (they are equal). Until
    then ``run`` is unset and reading it builds it: a Lazy never refers to itself, so a rule set
    is freed by reference counting alone, even where workers keep the collector off loaded objects."""

    __slots__ = ("run", "_build")

    def __init__(self, build: Callable[[], Callable[..., Any]]) -> None:
        self._build = build

    run: Callable[..., Any]

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name != "run":
            raise AttributeError(name)
        self.run = function = self._build()
        return function
