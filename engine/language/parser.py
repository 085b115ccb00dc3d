"""Parse condition text into the typed syntax tree of :mod:`engine.language.ast` with Lark (LALR)."""
from __future__ import annotations

from functools import lru_cache

from lark import Lark, Token, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken
from lark.visitors import Transformer_NonRecursive

from engine.language import ast
from engine.errors import ConditionError
from engine.resources import grammar_path

#: Longest condition text accepted, in characters.
MAX_CONDITION_LENGTH = 4000
#: Deepest parenthesis nesting accepted.
MAX_NESTING = 32
#: Most levels of the syntax tree (each ``not``, ``and``, ``or``, comparison and operand is one):
#: every later stage walks the tree recursively, so ``not not ... x`` chains are bounded too.
MAX_DEPTH = 256

_TOKEN_NAMES = {
    "LPAR": "'('", "RPAR": "')'", "LBRACE": "'{'", "RBRACE": "'}'", "COMMA": "','",
    "NAME": "a fact name", "NUMBER": "a number", "STRING": "a string", "DATE": "a date",
    "BARE": "a code", "COMPARATOR": "a comparison", "DURATION": "a duration", "SIGN": "'+' or '-'",
    "AND": "'and'", "OR": "'or'", "NOT": "'not'", "IN": "'in'", "OVERLAPS": "'overlaps'",
    "CONTAINS": "'contains'", "KNOWN": "'known'", "TRUE": "'true'", "FALSE": "'false'",
    "DOT": "'.'", "$END": "the end of the condition",
}


@lru_cache(maxsize=1)
def _lark() -> Lark:
    return Lark(grammar_path().read_text(encoding="utf-8"), parser="lalr",
                propagate_positions=True, maybe_placeholders=True)


def _pos(item: Token | object) -> ast.Pos:
    if isinstance(item, Token):
        return ast.Pos(item.line or 1, item.column or 1)
    return item.pos  # type: ignore[attr-defined, no-any-return]


def _meta_pos(meta: object) -> ast.Pos:
    return ast.Pos(getattr(meta, "line", 1), getattr(meta, "column", 1))


@v_args(meta=True)
class _ToAst(Transformer_NonRecursive):  # type: ignore[misc]
    """Turn Lark's parse tree into :mod:`engine.language.ast` nodes (without recursion, whatever the depth)."""

    def or_(self, meta: object, children: list[ast.Expr]) -> ast.Or:
        return ast.Or(_meta_pos(meta), _flatten(ast.Or, children))

    def and_(self, meta: object, children: list[ast.Expr]) -> ast.And:
        return ast.And(_meta_pos(meta), _flatten(ast.And, children))

    def not_(self, meta: object, children: list[ast.Expr]) -> ast.Not:
        return ast.Not(_meta_pos(meta), children[0])

    def compare(self, meta: object, children: list) -> ast.Compare:
        left, op, right = children
        return ast.Compare(_meta_pos(meta), str(op), left, right)

    def member(self, meta: object, children: list) -> ast.Member:
        return ast.Member(_meta_pos(meta), children[0], children[1], False)

    def not_member(self, meta: object, children: list) -> ast.Member:
        return ast.Member(_meta_pos(meta), children[0], children[1], True)

    def overlaps(self, meta: object, children: list) -> ast.Overlaps:
        return ast.Overlaps(_meta_pos(meta), children[0], children[1])

    def contains(self, meta: object, children: list) -> ast.Contains:
        return ast.Contains(_meta_pos(meta), children[0], children[1])

    def shift(self, meta: object, children: list) -> ast.Shift:
        base, sign, duration = children
        amount, unit = _split_duration(str(duration))
        return ast.Shift(_meta_pos(meta), base, 1 if sign == "+" else -1, amount, unit)

    def known(self, meta: object, children: list) -> ast.Known:
        return ast.Known(_meta_pos(meta), children[0])

    def fact(self, meta: object, children: list[Token]) -> ast.Fact:
        return ast.Fact(_pos(children[0]), ".".join(str(c) for c in children))

    def number(self, meta: object, children: list[Token]) -> ast.Literal:
        return ast.Literal(_pos(children[0]), "number", str(children[0]))

    def string(self, meta: object, children: list[Token]) -> ast.Literal:
        return ast.Literal(_pos(children[0]), "string", _unquote(str(children[0])))

    def date(self, meta: object, children: list[Token]) -> ast.Literal:
        return ast.Literal(_pos(children[0]), "date", str(children[0]))

    def true(self, meta: object, children: list) -> ast.Literal:
        return ast.Literal(_meta_pos(meta), "bool", "true")

    def false(self, meta: object, children: list) -> ast.Literal:
        return ast.Literal(_meta_pos(meta), "bool", "false")

    def value_set(self, meta: object, children: list[Token]) -> ast.ValueSetRef:
        return ast.ValueSetRef(_pos(children[0]), str(children[0]))

    def set_literal(self, meta: object, children: list) -> ast.SetLiteral:
        return ast.SetLiteral(_meta_pos(meta), tuple(c for c in children if c is not None))

    def quoted_item(self, meta: object, children: list[Token]) -> ast.SetItem:
        return ast.SetItem(_pos(children[0]), _unquote(str(children[0])), True)

    def bare_item(self, meta: object, children: list[Token]) -> ast.SetItem:
        return ast.SetItem(_pos(children[0]), str(children[0]), False)


def _flatten(kind: type, children: list[ast.Expr]) -> tuple[ast.Expr, ...]:
    out: list[ast.Expr] = []
    for child in children:
        out.extend(child.operands if isinstance(child, kind) else (child,))  # type: ignore[attr-defined]
    return tuple(out)


def _unquote(text: str) -> str:
    quote = text[0]
    return text[1:-1].replace("\\" + quote, quote).replace("\\\\", "\\")


def _split_duration(text: str) -> tuple[int, str]:
    digits = "".join(ch for ch in text if ch.isdigit())
    unit = text[len(digits):].strip().rstrip("s")
    return int(digits), unit


def _describe(expected: set[str]) -> str:
    names = sorted({_TOKEN_NAMES.get(e, e.lower()) for e in expected})
    return ", ".join(names[:8]) + (", ..." if len(names) > 8 else "")


def _end_position(text: str) -> tuple[int, int]:
    stripped = text.rstrip()
    lines = stripped.split("\n")
    return len(lines), len(lines[-1]) + 1


def _check_limits(text: str) -> None:
    if len(text) > MAX_CONDITION_LENGTH:
        raise ConditionError("E-condition-too-long",
                             f"condition is {len(text)} characters long; the limit is {MAX_CONDITION_LENGTH}")
    depth = 0
    line, column = 1, 0
    for ch in text:
        column += 1
        if ch == "\n":
            line, column = line + 1, 0
        elif ch == "(":
            depth += 1
            if depth > MAX_NESTING:
                raise ConditionError("E-condition-too-deep",
                                     f"parentheses nest deeper than {MAX_NESTING} levels", line, column)
        elif ch == ")":
            depth -= 1


def parse_condition(text: str) -> ast.Expr:
    """Parse a condition; raise :class:`ConditionError` with a position on any syntax error."""
    _check_limits(text)
    try:
        expr: ast.Expr = _ToAst().transform(_lark().parse(text))
    except UnexpectedCharacters as exc:
        raise ConditionError("E-syntax", f"unexpected character {text[exc.pos_in_stream]!r}",
                             exc.line, exc.column) from None
    except UnexpectedToken as exc:
        if exc.token.type == "$END":
            line, column = _end_position(text)
            raise ConditionError("E-syntax", f"condition ends too early; expected {_describe(exc.expected)}",
                                 line, column) from None
        raise ConditionError("E-syntax", f"unexpected {str(exc.token)!r}; expected {_describe(exc.expected)}",
                             exc.line, exc.column) from None
    except UnexpectedEOF as exc:
        line, column = _end_position(text)
        raise ConditionError("E-syntax", f"condition ends too early; expected {_describe(set(exc.expected))}",
                             line, column) from None
    except UnexpectedInput as exc:  # any other Lark input error
        raise ConditionError("E-syntax", str(exc).splitlines()[0], getattr(exc, "line", 1) or 1,
                             getattr(exc, "column", 1) or 1) from None
    deep = ast.too_deep(expr, MAX_DEPTH)
    if deep is not None:
        pos: ast.Pos = deep.pos  # type: ignore[attr-defined]
        raise ConditionError("E-condition-too-deep", f"condition nests deeper than {MAX_DEPTH} levels "
                             "(not, and, or, comparisons)", pos.line, pos.column)
    return expr
