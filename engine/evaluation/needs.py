"""What a policy needs to know: the facts its rules read, the values they test them against, and
the routes by which each documentation item comes to be owed.

This is the policy seen from the requester's side, the material a form about the policy is made
of (service/dtr/ turns it into FHIR Questionnaires); nothing here knows FHIR.
"""
from __future__ import annotations

from dataclasses import dataclass
from engine.language import ast
from engine.language.codes import normalize, system_of
from engine.language.facts import CODE, FACTS, ICD, FactSpec
from engine.language.logic import Analysed, analyse, walk
from engine.policy import DocItem, Policy


@dataclass(frozen=True)
class FactRead:
    """A fact the policy's conditions read, with the concrete values they compare it with (in the
    order they first appear) and the names of the policy's value sets those come from."""

    spec: FactSpec
    values: tuple[str, ...]
    value_sets: tuple[str, ...]


@dataclass(frozen=True)
class Route:
    """One way a documentation item comes to be owed under hit policy ``first``: every condition in
    ``unless`` is false, ``rule`` holds (None when the default answers) and so does ``own`` (the
    item's own ``when``, None when it has none)."""

    unless: tuple[Analysed, ...]
    rule: Analysed | None
    own: Analysed | None


@dataclass(frozen=True)
class Needs:
    """Everything a form about one policy version asks or lists."""

    facts: tuple[FactRead, ...]
    documentation: tuple[tuple[DocItem, tuple[Route, ...]], ...]


def _concrete(value: str, spec: FactSpec) -> str | None:
    """``value`` as an answer could give it, or None for wildcards and ranges."""
    if value.endswith("*"):
        return None
    if spec.type in (ICD, CODE):
        code = normalize(value)
        return code if system_of(code) is not None else None
    return value


def needs_of(policy: Policy) -> Needs:
    """The facts the policy's conditions read and its documentation items with their routes."""
    analysed = [analyse(rule.when, policy.value_sets) for rule in policy.rules]
    owns: dict[tuple[int | None, str], Analysed] = {(id(rule), ref.id): analyse(ref.when, policy.value_sets)
            for rule in policy.rules for ref in rule.outcome.documentation if ref.when}
    owns |= {(None, ref.id): analyse(ref.when, policy.value_sets)
             for ref in policy.default.documentation if ref.when}
    exprs = [info.expr for info in analysed] + [info.expr for info in owns.values()]
    values: dict[str, dict[str, None]] = {}
    sets: dict[str, dict[str, None]] = {}
    for expr in exprs:
        for node in walk(expr):
            if isinstance(node, ast.Fact) and node.name in FACTS:
                values.setdefault(node.name, {})
                sets.setdefault(node.name, {})
            if isinstance(node, (ast.Member, ast.Overlaps)) and isinstance(node.set, ast.ValueSetRef):
                subject = node.item if isinstance(node, ast.Member) else node.many
                if isinstance(subject, ast.Fact):
                    sets.setdefault(subject.name, {})[node.set.name] = None
    for info in [*analysed, *owns.values()]:
        for _node, fact, text in info.setting_literals():
            value = _concrete(text, FACTS[fact])
            if value is not None:
                values.setdefault(fact, {})[value] = None
    facts = tuple(FactRead(FACTS[name], tuple(values[name]), tuple(sets[name])) for name in values)
    routes: dict[str, list[Route]] = {}
    for index, rule in enumerate(policy.rules):
        for ref in rule.outcome.documentation:
            routes.setdefault(ref.id, []).append(
                Route(tuple(analysed[:index]), analysed[index], owns.get((id(rule), ref.id))))
    for ref in policy.default.documentation:
        routes.setdefault(ref.id, []).append(Route(tuple(analysed), None, owns.get((None, ref.id))))
    documentation = tuple((policy.documentation[doc_id], tuple(found)) for doc_id, found in routes.items())
    return Needs(facts, documentation)
