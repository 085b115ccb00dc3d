"""The same policy set run by other Python rule engines, used as their users would use them.

Each rule's condition is translated once into the peer's expression language and compiled by the
peer; a line is answered by scanning, in order, the rules of the policies that list its code and
are in force (hit policy ``first``), with facts taken from the v1 request by plain Python. Peers
are two-valued, so they are compared on lines whose facts are all given, where Kleene logic and
two-valued logic agree.
"""
from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from engine.language import ast
from engine.language.checker import Checker, Checked
from engine.language.codes import CodeSet
from engine.language.parser import parse_condition
from engine.policy import AUTH_NEEDED, CONDITIONAL, NO_AUTH, SATISFIED, Policy
from engine.evaluation.ruleset import RuleSet

_PA_RANK = {NO_AUTH: 0, SATISFIED: 1, CONDITIONAL: 2, AUTH_NEEDED: 3}
Compiled = Callable[[dict[str, Any]], bool]


def _name(fact: str) -> str:
    return fact.replace(".", "_")


def _members(members: object) -> tuple[list[str], list[str]]:
    """(exact members, prefixes) of a resolved set; long code ranges are not translated."""
    if isinstance(members, CodeSet):
        if members.ranges:
            raise NotImplementedError("long code ranges in conditions")
        return sorted(members.exact), list(members.prefixes)
    return sorted(str(m) for m in members), []  # type: ignore[attr-defined]


class _Translator:
    """Renders a checked condition in a peer's syntax; subclasses give the peer's spellings."""

    def __init__(self, checked: Checked) -> None:
        self.checked = checked

    def expr(self, node: ast.Expr) -> str:  # noqa: C901 - one branch per node kind
        if isinstance(node, ast.Literal):
            return self.literal(self.checked.values[node])
        if isinstance(node, ast.Fact):
            return _name(node.name)
        if isinstance(node, ast.Known):
            return f"{_name(node.fact.name)} != null"
        if isinstance(node, (ast.And, ast.Or)):
            joiner = " and " if isinstance(node, ast.And) else " or "
            return "(" + joiner.join(self.expr(o) for o in node.operands) + ")"
        if isinstance(node, ast.Not):
            return f"not ({self.expr(node.operand)})"
        if isinstance(node, ast.Compare):
            return f"{self.expr(node.left)} {node.op} {self.expr(node.right)}"
        if isinstance(node, ast.Member):
            test = self.member(self.expr(node.item), *_members(self.checked.sets[node.set]))
            return f"not ({test})" if node.negated else test
        if isinstance(node, ast.Overlaps):
            return self.overlaps(self.expr(node.many), *_members(self.checked.sets[node.set]))
        if isinstance(node, ast.Contains):
            return f"{self.expr(node.value)} in {self.expr(node.many)}"
        raise NotImplementedError(type(node).__name__)

    def literal(self, value: object) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, float):
            return repr(value)
        return json.dumps(str(value))

    def member(self, item: str, exact: list[str], prefixes: list[str]) -> str:
        raise NotImplementedError

    def overlaps(self, many: str, exact: list[str], prefixes: list[str]) -> str:
        raise NotImplementedError


class _Zen(_Translator):
    def literal(self, value: object) -> str:
        return f'date("{value}")' if isinstance(value, dt.date) else super().literal(value)

    def expr(self, node: ast.Expr) -> str:
        if isinstance(node, ast.Fact) and self.checked.types.get(node) == "date":
            return f"date({_name(node.name)})"
        if isinstance(node, ast.Contains):
            return f"contains({self.expr(node.many)}, {self.expr(node.value)})"
        return super().expr(node)

    def member(self, item: str, exact: list[str], prefixes: list[str]) -> str:
        tests = [f"{item} in {json.dumps(exact)}"] if exact else []
        tests += [f'startsWith({item}, "{p}")' for p in prefixes]
        return "(" + " or ".join(tests) + ")"

    def overlaps(self, many: str, exact: list[str], prefixes: list[str]) -> str:
        return f"some({many}, {self.member('#', exact, prefixes)})"


class _RuleEngine(_Translator):
    def literal(self, value: object) -> str:
        return f'd"{value}"' if isinstance(value, dt.date) else super().literal(value)

    def member(self, item: str, exact: list[str], prefixes: list[str]) -> str:
        tests = [f"{item} in {json.dumps(exact)}"] if exact else []
        tests += [f'{item}.starts_with("{p}")' for p in prefixes]
        return "(" + " or ".join(tests) + ")"

    def overlaps(self, many: str, exact: list[str], prefixes: list[str]) -> str:
        tests = [f"not ({many}.to_set & {{{', '.join(json.dumps(e) for e in exact)}}}).is_empty"] if exact else []
        if prefixes:
            tests.append(f"not [x for x in {many} if {' or '.join(f'x.starts_with({json.dumps(p)})' for p in prefixes)}].is_empty")
        return "(" + " or ".join(tests) + ")"


Peer = tuple[type[_Translator], Callable[[str], Compiled], bool]


def _zen_compiler() -> Peer:
    import zen

    def compile_(text: str) -> Compiled:
        return zen.compile_expression(text).evaluate  # type: ignore[no-any-return]
    return _Zen, compile_, True


def _rule_engine_compiler() -> Peer:
    import rule_engine
    context = rule_engine.Context(default_value=None)

    def compile_(text: str) -> Compiled:
        return rule_engine.Rule(text, context=context).matches  # type: ignore[no-any-return]
    return _RuleEngine, compile_, False


#: Peer name -> factory of (translator class, compile function, whether dates are passed as text).
PEERS: dict[str, Callable[[], Peer]] = {"zen-engine": _zen_compiler, "rule-engine": _rule_engine_compiler}


@dataclass
class _PeerPolicy:
    policy: Policy
    rules: list[tuple[Compiled, str]]


class PeerScanner:
    """A peer's compiled copy of a rule set, indexed by (payer, code) the way a user would do it."""

    def __init__(self, rules: RuleSet, peer: str) -> None:
        translator, compile_, self.dates_as_text = PEERS[peer]()
        self.index: dict[tuple[str, str], list[tuple[_PeerPolicy, tuple[Any, ...]]]] = defaultdict(list)
        compiled: dict[tuple[str, tuple[Any, ...]], Compiled] = {}
        for policy in rules.policy_versions():
            peer_rules = []
            for rule in policy.rules:
                key = (rule.when, tuple(sorted(policy.value_sets.items())))
                if key not in compiled:
                    expr = parse_condition(rule.when)
                    compiled[key] = compile_(translator(Checker(policy.value_sets).check(expr)).expr(expr))
                peer_rules.append((compiled[key], rule.outcome.pa_needed))
            entry = _PeerPolicy(policy, peer_rules)
            for group in policy.code_groups:
                codes = [*group.codes.exact, *(c for r in group.codes.ranges for c in r.codes())]
                for code in codes:
                    self.index[(policy.payer, code)].append((entry, (group.effective, group.end)))
        self.conditions = len(compiled)

    def answer(self, body: dict[str, Any]) -> list[str]:
        """pa_needed for each service line of a v1 request with every fact given."""
        common, day, plan = self._facts(body)
        answers = []
        for line in body["services"]:
            code = line["code"].upper()
            facts = {**common, "code": code, "modifiers": [m.upper() for m in line.get("modifiers", [])],
                     "units": float(line.get("units", 1)), "stage": line.get("stage"),
                     "other_codes": [s["code"].upper() for s in body["services"] if s is not line]}
            chosen = self._select(body["payer"], plan, code, day)
            answers.append(max((self._run(p, facts) for p in chosen), key=_PA_RANK.__getitem__, default=NO_AUTH))
        return answers

    def _facts(self, body: dict[str, Any]) -> tuple[dict[str, Any], dt.date, str | None]:
        day = dt.date.fromisoformat(body["date_of_service"])
        birth = dt.date.fromisoformat(body["patient"]["birth_date"])
        provider = body["provider"]
        facts = {
            "payer": body["payer"], "plan": body.get("plan"), "place_of_service": body["place_of_service"],
            "type_of_bill": body["type_of_bill"].upper().lstrip("0"), "state": body["state"],
            "date_of_service": day.isoformat() if self.dates_as_text else day,
            "patient_age": float(day.year - birth.year - ((day.month, day.day) < (birth.month, birth.day))),
            "patient_sex": body["patient"]["sex"], "diagnoses": [d.upper().replace(".", "") for d in body["diagnoses"]],
            "provider_network": provider["network"], "provider_npi": provider["npi"],
            "provider_specialty": provider["specialty"], "provider_exemptions": provider["exemptions"],
        }
        return facts, day, body.get("plan")

    def _select(self, payer: str, plan: str | None, code: str, day: dt.date) -> list[_PeerPolicy]:
        seen: dict[int, _PeerPolicy] = {}
        for entry, (first, last) in self.index.get((payer, code), ()):
            p = entry.policy
            if p.effective <= day and (p.end is None or day <= p.end) \
                    and (first is None or first <= day) and (last is None or day <= last):
                seen.setdefault(id(entry), entry)
        chosen = [e for e in seen.values() if (e.policy.extends is None if plan is None
                                               else e.policy.plans is None or plan in e.policy.plans)]
        overridden = {e.policy.extends for e in chosen if e.policy.extends}
        return [e for e in chosen if e.policy.id not in overridden]

    @staticmethod
    def _run(entry: _PeerPolicy, facts: dict[str, Any]) -> str:
        for test, pa_needed in entry.rules:
            if test(facts):
                return pa_needed
        return entry.policy.default.pa_needed


def full_fact_bodies(mix: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The request bodies of the mix that give every fact (the peers' two-valued ground), each said
    to be a complete order, so that the other lines' codes are known too."""
    return [{**m["body"], "order_complete": True} for m in mix if m["kind"] != "unknown"]
