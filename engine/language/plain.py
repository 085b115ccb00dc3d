"""Conditions in plain English, for the people who read answers: front desks, DTR users, CRD cards.

``diagnoses overlaps malignant_vcf`` reaches them as "a diagnosis is a malignant vertebral compression
fracture (C79.51, C90.0*, C41.2)". The checked syntax tree is worded with the facts' titles
(:data:`engine.language.facts.FACTS`) and the value sets' (``title`` in a policy file); every member of a set
is named as the author wrote it (ranges and prefixes kept short), so a reader can check a code
against it. Negations are pushed down to the predicates (De Morgan; exact under Kleene logic), and a
condition that is a negation as a whole reads "unless ...". Authors keep the condition text
(engine/language/render.py) where they look: traces and ``covreq eval --explain``.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Mapping, Sequence

from engine.language import ast
from engine.language.checker import Checked, Checker
from engine.language.facts import DATE, FACTS
from engine.language.parser import parse_condition
from engine.loading.vocab import PLACES_OF_SERVICE

#: Facts whose values are CMS place-of-service codes, named with their meaning: "19 (off-campus ...)".
_PLACES = frozenset({"place_of_service", "trial_place_of_service"})
#: Comparison of a number, positive and negated: the words after "is" around the value.
_NUMBER_WORDS = {"==": ("", ""), "!=": ("not ", ""), "<": ("less than ", ""), "<=": ("", " or less"),
                 ">": ("more than ", ""), ">=": ("", " or more")}
_DATE_WORDS = {"==": ("", ""), "!=": ("not ", ""), "<": ("before ", ""), "<=": ("on or before ", ""),
               ">": ("after ", ""), ">=": ("on or after ", "")}
_NEGATED = {"==": "!=", "!=": "==", "<": ">=", ">=": "<", ">": "<=", "<=": ">"}
_MIRRORED = {"==": "==", "!=": "!=", "<": ">", ">": "<", "<=": ">=", ">=": "<="}
#: Titles that begin with one of these words are read as written, without "a" or "an" before them.
_DETERMINERS = frozenset({"a", "an", "the", "one", "any", "some"})
#: Upper-case initial letters read with a vowel sound ("an MRI", "an NPI"): "an" goes before them.
_VOWEL_LETTERS = frozenset("AEFHILMNORSX")


class Wording:
    """Words for the conditions of one policy: its value sets (name -> members) and their titles."""

    def __init__(self, checked: Checked, value_sets: Mapping[str, Sequence[str]],
                 titles: Mapping[str, str]) -> None:
        self.checked, self.value_sets, self.titles = checked, value_sets, titles

    def clause(self, expr: ast.Expr) -> str:
        """``expr`` as a clause that completes "needed ...": "when ...", "unless ...", "always"."""
        if isinstance(expr, ast.Literal):
            return "always" if expr.text == "true" else "never"
        if isinstance(expr, ast.Not) and not _negative(expr.operand):
            return "unless " + self.holds(expr.operand)
        return "when " + self.holds(expr)

    def holds(self, node: ast.Expr, negated: bool = False) -> str:  # noqa: C901 - one branch per node kind
        """The statement that ``node`` holds (that it does not, when ``negated``)."""
        if isinstance(node, ast.Not):
            return self.holds(node.operand, not negated)
        if isinstance(node, (ast.And, ast.Or)):
            return self._joined(node, negated)
        if isinstance(node, ast.Literal):
            return "always" if (node.text == "true") != negated else "never"
        if isinstance(node, ast.Known):
            spec = FACTS[node.fact.name]
            return f"{spec.title} {'are' if spec.many else 'is'}{' not' if negated else ''} known"
        if isinstance(node, ast.Compare):
            return self._compare(node, negated)
        if isinstance(node, ast.Member):
            return f"{self.value(node.item)} is {self._in(node.set, self._fact(node.item), negated != node.negated)}"
        if isinstance(node, ast.Overlaps):
            member = FACTS[node.many.name].member  # type: ignore[union-attr] # the checker allows facts only
            subject = f"no {member}" if negated else f"{_article(member)} {member}"
            return f"{subject} is {self._in(node.set, self._fact(node.many), False)}"
        if isinstance(node, ast.Contains):
            return (f"{self.value(node.many)} {'do not include' if negated else 'include'} "
                    f"{self.value(node.value, self._fact(node.many))}")
        raise TypeError(f"{type(node).__name__} is not a condition")

    def value(self, node: ast.Expr, fact: str | None = None) -> str:
        """A fact, literal or date shift as a noun phrase; a literal compared with ``fact`` is named
        as that fact's values are (a place of service with its meaning)."""
        if isinstance(node, ast.Fact):
            return FACTS[node.name].title
        if isinstance(node, ast.Literal):
            return _member(node.text, fact)
        if isinstance(node, ast.Shift):
            unit = node.unit if node.amount == 1 else node.unit + "s"
            return f"{node.amount} {unit} {'after' if node.sign > 0 else 'before'} {self.value(node.base)}"
        raise TypeError(f"{type(node).__name__} is not a value")

    def _joined(self, node: ast.And | ast.Or, negated: bool) -> str:
        """``and``/``or`` of the operands, swapped when negated (De Morgan). A compound operand of the
        other kind reads "both ... and ..." or "either ... or ..." ("all of", "any of" for more than
        two), set off by commas: "either A or B, and C"."""
        conjunction = isinstance(node, ast.And) != negated
        word = "and" if conjunction else "or"
        parts, compound = [], False
        for operand in node.operands:
            text, inner = self.holds(operand, negated), _compound(operand, negated)
            if inner is not None and inner[0] != conjunction:
                many = inner[1] > 2
                lead = ("all of " if many else "both ") if inner[0] else ("any of " if many else "either ")
                text = lead + text
                compound = True
            parts.append(text)
        if compound:
            return f", {word} ".join(parts)
        return ", ".join(parts[:-1]) + f" {word} " + parts[-1]

    def _compare(self, node: ast.Compare, negated: bool) -> str:
        left, right, op = node.left, node.right, node.op
        if isinstance(left, ast.Literal) and not isinstance(right, ast.Literal):
            left, right, op = right, left, _MIRRORED[op]
        if negated:
            op = _NEGATED[op]
        before, after = (_DATE_WORDS if self.checked.types.get(left) == DATE else _NUMBER_WORDS)[op]
        return f"{self.value(left)} is {before}{self.value(right, self._fact(left))}{after}"

    def _in(self, ref: ast.SetRef, fact: str | None, negated: bool) -> str:
        """What follows "is" for membership of ``ref``: "a <title> (A, B)", "one of the <name> (A, B)",
        "one of A, B" or "A" (with "not" when ``negated``)."""
        no = "not " if negated else ""
        if isinstance(ref, ast.ValueSetRef):
            members = ", ".join(self.value_sets[ref.name])
            title = self.titles.get(ref.name)
            if title:
                return f"{no}{title if _determined(title) else _article(title) + ' ' + title} ({members})"
            return f"{no}one of the {ref.name.replace('_', ' ')} ({members})"
        named = [_member(item.text, fact) for item in ref.items]
        return no + (named[0] if len(named) == 1 else "one of " + ", ".join(named))

    @staticmethod
    def _fact(node: ast.Expr) -> str | None:
        return node.name if isinstance(node, ast.Fact) else None


def _compound(node: ast.Expr, negated: bool) -> tuple[bool, int] | None:
    """Whether ``node`` reads as a conjunction (True) or a disjunction (False) under ``negated``, and
    of how many operands; None for a predicate."""
    if isinstance(node, ast.Not):
        return _compound(node.operand, not negated)
    if isinstance(node, (ast.And, ast.Or)):
        return isinstance(node, ast.And) != negated, len(node.operands)
    return None


def _negative(node: ast.Expr) -> bool:
    """Whether ``node`` reads as a negation ("is not", "not in"): "unless" before it would be a double one."""
    return (isinstance(node, ast.Not) or isinstance(node, ast.Member) and node.negated
            or isinstance(node, ast.Compare) and node.op == "!=")


def _member(text: str, fact: str | None) -> str:
    """A value as people read it: a place of service with its meaning, anything else as written."""
    if fact in _PLACES and text in PLACES_OF_SERVICE:
        return f"{text} ({PLACES_OF_SERVICE[text]})"
    return text


def _determined(title: str) -> bool:
    return title.split(" ", 1)[0].lower() in _DETERMINERS


def _article(noun: str) -> str:
    """ "a" or "an" before ``noun``: "an" before a vowel sound, including initialisms read with one ("an MRI")."""
    word = noun.split(" ", 1)[0]
    if len(word) > 1 and word.isupper():
        return "an" if word[0] in _VOWEL_LETTERS else "a"
    if word.lower().startswith(("uni", "use", "usu", "eu", "one")):
        return "a"
    return "an" if word[:1].lower() in "aeiou" else "a"


def wording(expr: ast.Expr, value_sets: Mapping[str, Sequence[str]], titles: Mapping[str, str]) -> Wording:
    """The words for ``expr``, a condition the checker accepts with ``value_sets``."""
    return Wording(Checker(value_sets).check(expr), value_sets, titles)


@lru_cache(maxsize=4096)
def _parsed(text: str) -> tuple[ast.Expr, tuple[str, ...]]:
    expr = parse_condition(text)
    return expr, ast.value_sets_of(expr)


@lru_cache(maxsize=4096)
def _clause(texts: tuple[str, ...], sets: tuple[tuple[str, tuple[str, ...], str], ...]) -> str:
    exprs = [_parsed(text)[0] for text in texts]
    expr = exprs[0] if len(exprs) == 1 else ast.And(exprs[0].pos, tuple(exprs))  # type: ignore[union-attr]
    return wording(expr, {name: members for name, members, _ in sets},
                   {name: title for name, _, title in sets if title}).clause(expr)


def needed_when(conditions: Sequence[str], value_sets: Mapping[str, Sequence[str]],
                titles: Mapping[str, str]) -> str:
    """The clause saying when something is needed: when all of ``conditions`` hold (texts of one
    policy, checked at load with its ``value_sets``). Remembered per texts and the sets they name."""
    named = sorted({name for text in conditions for name in _parsed(text)[1]})
    return _clause(tuple(conditions), tuple((name, tuple(value_sets[name]), titles.get(name, "")) for name in named))
