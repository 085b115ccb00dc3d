"""Static analysis of a whole rule tree: findings a valid tree may still have.

Every check has a stable code and a default severity (see :data:`CHECKS` and docs/authoring.md,
"Lint"). Load problems (``E-...``) are reported too, as errors, so ``covreq lint`` is a superset of
``covreq validate``. The checks reason about conditions with :mod:`engine.language.logic` (constant folding
within a policy's dates and codes, and implication between conditions).
"""
from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence, TextIO
from urllib.parse import urlparse

from engine.language import ast
from engine.language.codes import CodeRange, compress, covered_items
from engine.errors import Problem
from engine.loading.loader import Tree, read_tree
from engine.loading.locate import condition_location, key_location, read_located
from engine.language.logic import Analysed, Scope, analyse, fold, implies
from engine.policy import NO_AUTH, Location, Policy, Rule
from engine.language.render import render
from engine.authoring.report import Finding, checks_by_file, write_findings


@dataclass(frozen=True)
class CheckInfo:
    """A lint check: its default severity and what it finds."""

    severity: str
    summary: str


CHECKS: dict[str, CheckInfo] = {
    "W-conflict": CheckInfo("warning", "two policies of one payer govern a code on overlapping dates and plans, "
                                       "and their rules can answer differently"),
    "W-shadowed": CheckInfo("warning", "a rule can never fire: an earlier rule is always true, or true whenever it is"),
    "W-shadowed-exemption": CheckInfo("warning", "a rule a plan override puts before its base's rules is true "
                                                 "whenever an exemption (a no-auth rule) of the base is"),
    "W-constant": CheckInfo("warning", "a condition, or part of one, is always true or always false for the policy"),
    "W-duplicate-code": CheckInfo("warning", "a code list names a code twice, or a code inside one of its ranges"),
    "W-unused-doc": CheckInfo("warning", "a documentation item no rule or default asks for"),
    "W-unused-value-set": CheckInfo("warning", "a value set no condition uses"),
    "W-untitled-value-set": CheckInfo("notice", "a value set people read in a documentation condition has no title"),
    "W-source-url": CheckInfo("warning", "the source URL is a placeholder or not https"),
    "W-expired": CheckInfo("notice", "the latest version of a policy ended before today (kept to answer past dates "
                                     "of service, or forgotten?)"),
    "W-pause": CheckInfo("warning", "a pause never applies: it lies outside the policy's period or inside another "
                                    "pause"),
    "W-gap": CheckInfo("notice", "codes for which no rule is always true and there is no default: a request in a "
                                 "setting no rule names gets the implicit no-auth"),
}

_PLACEHOLDER_HOSTS = ("example.org", "example.com", "example.net", "example", "invalid", "localhost")


def _finding(code: str, where: Location, message: str) -> Finding:
    return Finding(Problem(where.path, where.line, where.column, code, message), CHECKS[code].severity)


def _own_rules(policy: Policy) -> tuple[Rule, ...]:
    """The rules written in the policy's own file (a plan override's inherited rules are its base's)."""
    return tuple(r for r in policy.rules if r.location.path == policy.location.path)


def _files(tree: Tree) -> dict[str, list[Policy]]:
    """Compiled versions grouped by the file that defines them (a plan override may yield several)."""
    grouped: dict[str, list[Policy]] = defaultdict(list)
    for policy in tree.policies:
        grouped[policy.location.path].append(policy)
    return grouped


def _scope(versions: list[Policy], codes: frozenset[str] | None = None) -> Scope:
    ends = [p.end for p in versions]
    policy = versions[0]
    exact = frozenset().union(*(g.codes.exact for g in policy.code_groups))
    wide = any(g.codes.ranges or g.codes.prefixes for g in policy.code_groups)
    return Scope(policy.payer, min(p.effective for p in versions), None if None in ends else max(ends),  # type: ignore[type-var]
                 codes if codes is not None else (None if wide or not exact else exact))


def _analysed(versions: list[Policy]) -> list[tuple[Rule, Analysed]]:
    policy = versions[0]
    return [(rule, analyse(rule.when, policy.value_sets)) for rule in _own_rules(policy)]


def _constants(rules: list[tuple[Rule, Analysed]], scope: Scope) -> Iterator[Finding]:
    for rule, info in rules:
        top = info.expr
        if isinstance(top, ast.Literal) and top.text == "true":
            continue
        stack: list[ast.Expr] = [top]
        while stack:
            node = stack.pop()
            folded = fold(node, info, scope)
            if folded is not None:
                value, why = folded
                subject = "the condition" if node is top else f"`{render(node)}`"
                where = condition_location(rule, node.pos.line, node.pos.column)
                yield _finding("W-constant", where, f"rule '{rule.id}': {subject} is always "
                                                    f"{'true' if value else 'false'}{why}")
            elif isinstance(node, (ast.And, ast.Or)):
                stack.extend(reversed(node.operands))
            elif isinstance(node, ast.Not):
                stack.append(node.operand)


def _shadowed(rules: list[tuple[Rule, Analysed]], scope: Scope) -> Iterator[Finding]:
    for i, (rule, info) in enumerate(rules):
        for earlier, earlier_info in rules[:i]:
            folded = fold(earlier_info.expr, earlier_info, scope)
            if folded is not None and folded[0]:
                why = f"rule '{earlier.id}' at line {earlier.location.line} is always true"
            elif implies(info, earlier_info):
                why = f"rule '{earlier.id}' at line {earlier.location.line} is true whenever this one is"
            else:
                continue
            yield _finding("W-shadowed", rule.location, f"rule '{rule.id}' can never fire under hit policy "
                                                        f"first: {why}")
            break


def _shadowed_exemptions(versions: list[Policy]) -> Iterator[Finding]:
    """Rules of a plan override, tried before its base's, that hide an exemption of the base."""
    policy = versions[0]
    if not policy.extends:
        return
    scope = _scope(versions)
    own = policy.location.path
    rules = [(rule, analyse(rule.when, policy.value_sets)) for rule in policy.rules]
    for index, (exemption, exempt_info) in enumerate(rules):
        if exemption.location.path == own or exemption.outcome.pa_needed != NO_AUTH:
            continue
        for rule, info in rules[:index]:
            if rule.location.path != own or rule.outcome.pa_needed == NO_AUTH:
                continue
            if (folded := fold(info.expr, info, scope)) and folded[0] or implies(exempt_info, info):
                plans = ", ".join(sorted(policy.plans or ()))
                yield _finding("W-shadowed-exemption", rule.location,
                               f"rule '{rule.id}' of plan override '{policy.id}' is tried before the base's rules and "
                               f"is true whenever the base's exemption '{exemption.id}' ({exemption.location}) is, so "
                               f"for plans {plans} that exemption never applies; put the rule under `rules_after`, "
                               f"or add documentation with `add_documentation`")
                break


def _unused(tree: Tree) -> Iterator[Finding]:
    used: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for policy in tree.policies:
        family = policy.extends or policy.id
        for rule in policy.rules:
            used[family] |= {("documentation", d.id) for d in rule.outcome.documentation}
            used[family] |= {("value_sets", n) for n in analyse(rule.when, policy.value_sets).used_value_sets}
            for ref in rule.outcome.documentation:
                if ref.when:
                    used[family] |= {("value_sets", n) for n in analyse(ref.when, policy.value_sets).used_value_sets}
        used[family] |= {("documentation", d.id) for d in policy.default.documentation}
    for path in sorted({p.location.path for p in tree.policies}):
        data = read_located(path)[0] or {}
        family = data.get("extends") or data.get("id")
        for section, code, noun in (("documentation", "W-unused-doc", "documentation item"),
                                    ("value_sets", "W-unused-value-set", "value set")):
            for name in data.get(section) or {}:
                if (section, name) not in used[family]:
                    yield _finding(code, key_location(path, section, name),
                                   f"{noun} '{name}' is never used by the rules of policy '{family}'")


def _untitled(versions: list[Policy]) -> Iterator[Finding]:
    """Value sets of the file without a title that people read (engine/language/plain.py) in a documentation
    item's condition, or in the condition of a rule that owes documentation (when it is undecided)."""
    path = versions[0].location.path
    data = read_located(path)[0] or {}
    written = data.get("value_sets") if isinstance(data.get("value_sets"), dict) else {}
    shown: set[str] = set()
    for policy in versions:
        outcomes = [(rule.when, rule.outcome) for rule in _own_rules(policy)] + [(None, policy.default)]
        for when, outcome in outcomes:
            texts = [ref.when for ref in outcome.documentation if ref.when]
            texts += [when] if when and outcome.documentation else []
            shown.update(name for text in texts for name in analyse(text, policy.value_sets).used_value_sets)
    for name in sorted(shown):
        entry = written.get(name)
        if entry is not None and not isinstance(entry, dict):
            yield _finding("W-untitled-value-set", key_location(path, "value_sets", name),
                           f"value set '{name}' is read in a condition people see with the documentation it "
                           f"decides, where it reads \"one of the {name.replace('_', ' ')}\"; give it a title "
                           f"(`{name}: {{title: ..., values: [...]}}`)")


def _duplicate_codes(path: str) -> Iterator[Finding]:
    """Codes a list of the file already holds: listed twice, or inside one of the list's ranges."""
    data, locations, _ = read_located(path)
    top = data.get("codes") if isinstance(data, dict) else None
    lists = [(("codes",), top if isinstance(top, list) else [])]
    lists += [(("codes", i, "codes"), group.get("codes")) for i, group in enumerate(lists[0][1])
              if isinstance(group, dict) and isinstance(group.get("codes"), list)]
    for keys, items in lists:
        plain = [(index, str(item)) for index, item in enumerate(items) if not isinstance(item, (dict, list))]
        for at, holder in covered_items([text for _, text in plain]).items():
            index, text = plain[at]
            spot = locations.find((*keys, index))
            said = "listed already" if holder == text else f"already in {holder}"
            yield _finding("W-duplicate-code", Location(path, spot.line, spot.column),
                           f"code \"{text}\" is {said}; drop it (covreq fmt does)")


def _source(policy: Policy) -> Iterator[Finding]:
    url = urlparse(policy.url)
    host = (url.hostname or "").lower()
    if not host or any(host == h or host.endswith("." + h) for h in _PLACEHOLDER_HOSTS) or "..." in policy.url:
        yield _finding("W-source-url", key_location(policy.location.path, "source"),
                       f"policy '{policy.id}': source URL {policy.url!r} is a placeholder; link the published policy")
    elif url.scheme != "https":
        yield _finding("W-source-url", key_location(policy.location.path, "source"),
                       f"policy '{policy.id}': source URL {policy.url!r} is not https")


def _expired(tree: Tree, today: dt.date) -> Iterator[Finding]:
    latest: dict[tuple[str, str | None], Policy] = {}
    for policy in tree.policies:
        key = (policy.id, policy.extends)
        if key not in latest or policy.effective > latest[key].effective:
            latest[key] = policy
    for policy in latest.values():
        if policy.end is not None and policy.end < today:
            yield _finding("W-expired", key_location(policy.location.path, "end"),
                           f"policy '{policy.id}' ended on {policy.end} and no later version follows it")


def _idle_pauses(policy: Policy) -> Iterator[Finding]:
    """Pauses of one version that no date of service reaches."""
    if policy.extends:  # an override's period is its base's, narrowed: the base's file is checked
        return
    for i, pause in enumerate(policy.pauses):
        where = key_location(policy.location.path, "pauses", i, "start")
        period = f"{policy.effective} to {policy.end or 'open'}"
        if (pause.end is not None and pause.end < policy.effective) or (policy.end and pause.start > policy.end):
            yield _finding("W-pause", where, f"policy '{policy.id}': the pause from {pause.start} never applies: "
                                             f"the policy is in force from {period}")
            continue
        outer = next((o for j, o in enumerate(policy.pauses) if j != i and o.covers(pause.start)
                      and (o.end is None or (pause.end is not None and pause.end <= o.end))), None)
        if outer is not None:
            yield _finding("W-pause", where, f"policy '{policy.id}': the pause from {pause.start} lies inside the "
                                             f"pause from {outer.start}")


def _gaps(versions: list[Policy], rules: list[tuple[Rule, Analysed]]) -> Iterator[Finding]:
    policy = versions[0]
    data = read_located(policy.location.path)[0] or {}
    if "default" in data or policy.extends:
        return
    scope = _scope(versions)
    if scope.codes is None:
        return
    facts = sorted({f for rule, _ in rules for f in rule.facts} - {"code", "date_of_service"})
    gaps = [c for c in sorted(scope.codes)
            if not any((r := fold(info.expr, info, _scope(versions, frozenset({c})))) and r[0] for _, info in rules)]
    if gaps and facts:
        where = key_location(policy.location.path, "rules")
        yield _finding("W-gap", where, f"policy '{policy.id}': for {', '.join(compress(gaps))} no rule is always "
                                       f"true and there is no default, so a request that matches none of the "
                                       f"rules (they read {', '.join(facts)}) gets the implicit no-auth")


def _profile(policy: Policy) -> frozenset[tuple[str, str]]:
    """Every (pa_needed, covered) the policy's rules can answer, up to its first always-true rule."""
    scope = _scope([policy])
    answers = set()
    for rule in policy.rules:
        answers.add((rule.outcome.pa_needed, rule.outcome.covered))
        info = analyse(rule.when, policy.value_sets)
        folded = fold(info.expr, info, scope)
        if folded is not None and folded[0]:
            return frozenset(answers)
    return frozenset(answers | {(policy.default.pa_needed, policy.default.covered)})


def _shared_codes(a: Policy, b: Policy) -> tuple[list[str], dt.date, dt.date | None]:
    start = max(a.effective, b.effective)
    ends = [d for d in (a.end, b.end) if d]
    end = min(ends) if ends else None
    shared: set[str] = set()
    for ga in a.code_groups:
        for gb in b.code_groups:
            lo = max([start, *(d for d in (ga.effective, gb.effective) if d)])
            his = [d for d in (end, ga.end, gb.end) if d]
            if his and min(his) < lo:
                continue
            shared |= {c for c in ga.codes.exact if c in gb.codes} | {c for c in gb.codes.exact if c in ga.codes}
            shared |= {f"{ra.codes()[0]}-{ra.codes()[-1]}" for ra in ga.codes.ranges for rb in gb.codes.ranges
                       if _ranges_meet(ra, rb)}
    return sorted(shared), start, end


def _ranges_meet(a: CodeRange, b: CodeRange) -> bool:
    return (a.prefix, a.suffix, a.width) == (b.prefix, b.suffix, b.width) and a.low <= b.high and b.low <= a.high


def _conflicts(tree: Tree) -> Iterator[Finding]:
    policies = sorted(tree.policies, key=lambda p: (p.location.path, p.effective))
    for i, a in enumerate(policies):
        for b in policies[i + 1:]:
            if a.payer != b.payer or (a.extends or a.id) == (b.extends or b.id):
                continue  # another payer, or one family: versions of a policy and its plan overrides
            if a.plans is not None and b.plans is not None and not a.plans & b.plans:
                continue
            if b.end is not None and b.end < a.effective or a.end is not None and a.end < b.effective:
                continue
            profile_a, profile_b = _profile(a), _profile(b)
            if profile_a == profile_b:
                continue
            codes, start, end = _shared_codes(a, b)
            if codes:
                answers = "; ".join(f"'{p.id}' answers {', '.join(sorted('/'.join(o) for o in prof))}"
                                    for p, prof in ((a, profile_a), (b, profile_b)))
                yield _finding("W-conflict", b.location,
                               f"policies '{a.id}' ({a.location}) and '{b.id}' both govern {', '.join(compress(codes))} "
                               f"from {start} to {end or 'open'} and can answer differently ({answers})")


def lint_tree(tree: Tree, today: dt.date | None = None) -> list[Finding]:
    """Every finding of the tree: its load problems as errors, then the lint checks, sorted by place."""
    today = today or dt.date.today()
    findings: list[Finding] = [Finding(p) for p in tree.problems]
    for versions in _files(tree).values():
        rules = _analysed(versions)
        scope = _scope(versions)
        findings += _constants(rules, scope)
        findings += _shadowed(rules, scope)
        findings += _shadowed_exemptions(versions)
        findings += _gaps(versions, rules)
        findings += _source(versions[0])
        findings += _untitled(versions)
        for policy in versions:
            findings += _idle_pauses(policy)
    findings += _unused(tree)
    for path in sorted({p.location.path for p in tree.policies}):
        findings += _duplicate_codes(path)
    findings += _expired(tree, today)
    findings += _conflicts(tree)
    unique = dict.fromkeys(findings)
    return sorted(unique, key=lambda f: f.problem)


def fails(findings: Iterable[Finding], fail_on: str) -> bool:
    """True when some finding is at least as severe as ``fail_on`` (error > warning > notice)."""
    rank = {"error": 2, "warning": 1, "notice": 0}
    return any(rank[f.severity] >= rank[fail_on] for f in findings)


def run(paths: Sequence[str], fmt: str, out: TextIO, err: TextIO, today: dt.date | None = None,
        fail_on: str = "warning") -> int:
    """The ``covreq lint`` command: lint every tree, write the findings; exit 1 when one reaches ``fail_on``."""
    findings: list[Finding] = []
    files: list[str] = []
    for path in paths:
        tree = read_tree(path)
        findings += lint_tree(tree, today)
        files += tree.files
    write_findings(findings, fmt, out, "covreq lint", checks_by_file(files, findings, "lint"))
    if fmt in ("text", "github"):
        counts = {s: sum(f.severity == s for f in findings) for s in ("error", "warning", "notice")}
        print(", ".join(f"{n} {s}(s)" for s, n in counts.items()) + f" in {len(files)} file(s)", file=err)
    return 1 if fails(findings, fail_on) else 0
