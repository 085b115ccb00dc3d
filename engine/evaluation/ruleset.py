"""The immutable, thread-safe rule set: policies indexed by payer and code, and evaluation."""
from __future__ import annotations

import datetime as dt
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable, Hashable, Iterable, Mapping, NoReturn


from engine.evaluation.clock import current_day
from engine.language.codegen import compile_builder
from engine.language.codes import CodeRange, code_parts
from engine.errors import LoadError, RequestError, did_you_mean
from engine.evaluation.evaluate import Answer, apply_authorizations, combine, may_be_authorized, run_policy
from engine.language.facts import fact_of, unsettled
from engine.loading.files import loading
from engine.loading.loader import read_tree
from engine.evaluation.memo import MAX_KEY_BYTES, AnswerCache
from engine.language.plain import needed_when
from engine.policy import (COMPLETE, CONDITIONAL, NO_AUTH, PROGRAMS, UNKNOWN, Outcome, PayerInfo, Policy, Rule,
                     known_plans)
from engine.evaluation.request import Line, Request, parse_request
from engine.evaluation.trace import pause_trace, rule_trace

#: Width of one bucket of the wide-range index, in code numbers.
_BUCKET = 1000
#: Most (payer, plan, code, date) selections a rule set remembers.
SELECT_CACHE_SIZE = 65536
#: Most decision builders a rule set keeps (one per policy outcome and documentation-condition values met).
TEMPLATE_CACHE_SIZE = 65536
#: Bytes of answers to whole requests a rule set remembers (see engine/evaluation/memo.py).
ANSWER_CACHE_BYTES = 64 * 1024 * 1024


class RuleSet:
    """Loaded policies of one rule tree. Build with :func:`engine.load`; never mutated after."""

    def __init__(self, policies: Iterable[Policy], payers: Mapping[str, PayerInfo], digest: str,
                 source: str = "") -> None:
        self._policies = tuple(policies)
        self._payer_info = dict(payers)
        self.digest = digest
        self.source = source
        self.loaded_at = dt.datetime.now(dt.timezone.utc)
        #: Ranges too long to expand, by (payer, prefix, suffix, digits, number // _BUCKET) of the codes
        #: they hold: a lookup reads one bucket, however many ranges the payer has.
        self._wide: dict[tuple[str, str, str, int, int], list[tuple[CodeRange, Policy]]] = defaultdict(list)
        listed: dict[tuple[str, str], list[Policy]] = defaultdict(list)
        for policy in self._policies:
            for code in dict.fromkeys(code for group in policy.code_groups for code in group.codes.exact):
                listed[(policy.payer, code)].append(policy)
            for group in policy.code_groups:
                for r in group.codes.ranges:
                    for bucket in range(r.low // _BUCKET, r.high // _BUCKET + 1):
                        self._wide[(policy.payer, *r.shape(), bucket)].append((r, policy))
        #: For each exactly listed (payer, code), the policies listing it; the codes of one policy
        #: share one tuple of its versions (the index of 100,000 rules held 203,138 tuples, now 16,741).
        same: dict[tuple[int, ...], tuple[Policy, ...]] = {}
        self._listed = {key: same.setdefault(tuple(map(id, entries)), tuple(entries)) for key, entries in listed.items()}
        self._payers = frozenset(p.payer for p in self._policies) | frozenset(self._payer_info)
        #: The plans each payer knows: those its ``_payer.yaml`` lists, else those its policies name.
        self._plans = known_plans(self._policies, self._payer_info)
        #: Payers whose plans declare scopes of their own: their unlisted answers depend on the plan.
        self._plan_scoped = frozenset(payer for payer, info in self._payer_info.items() if info.plan_scopes)
        #: The reason of every unlisted line of a payer whose ``_payer.yaml`` words it (``default.reason``).
        self._fixed_reasons = {payer: info.default.reason for payer, info in self._payer_info.items()
                               if info.default and info.default.reason}
        grouped: dict[str, list[Policy]] = defaultdict(list)
        for policy in self._policies:
            grouped[policy.id].append(policy)
        #: Versions of each policy id, ids sorted: what the policy listing endpoints describe.
        self._by_id = {pid: tuple(grouped[pid]) for pid in sorted(grouped)}
        #: Selections repeat all day (the same codes on the same date), so each rule set keeps its
        #: own: a reload starts a fresh cache, and no answer outlives the rules that gave it. A plain
        #: dict: reads and writes are atomic under the GIL, so threads share it without a lock.
        self._selections: dict[tuple[str, str | None, str, dt.date], tuple[Policy, ...]] = {}
        self._select_hits = self._select_misses = 0
        self._answers = AnswerCache(ANSWER_CACHE_BYTES)
        #: Decisions as generated builders taking the line's code and system, with their pa_needed:
        #: of one policy with nothing unknown, by :func:`_template_key`; of a line no policy lists, by
        #: payer (the builder also takes the reason). Later lines with the same key are built by them.
        self._templates: dict[Hashable, tuple[Callable[..., dict[str, Any]], str]] = {}

    def __len__(self) -> int:
        return len(self._policies)

    def payers(self) -> list[str]:
        """Ids of the payers this rule set knows."""
        return sorted(self._payers)

    def payer_title(self, payer: str) -> str:
        """The payer's display title from ``_payer.yaml``, or its id when none is given."""
        info = self._payer_info.get(payer)
        return info.title if info and info.title else payer

    def plan_title(self, payer: str, plan: str) -> str:
        """The plan's display title from the payer's ``_payer.yaml``, or the plan id when none is given."""
        info = self._payer_info.get(payer)
        return info.plans.get(plan, plan) if info else plan

    def plan_titles(self, payer: str) -> dict[str, str]:
        """Every plan title the payer's ``_payer.yaml`` gives, by plan id."""
        info = self._payer_info.get(payer)
        return dict(info.plans) if info else {}

    def plans(self, payer: str) -> frozenset[str]:
        """The plan ids a request for ``payer`` may name: those its ``_payer.yaml`` lists, else those
        its policies name (none for a payer this rule set does not know)."""
        return self._plans.get(payer, frozenset())

    def scope(self, payer: str, plan: str | None = None) -> str:
        """What the rules hold of the payer's (and plan's) prior-authorization list: ``complete`` or
        ``programs`` (the default, see docs/authoring.md)."""
        info = self._payer_info.get(payer)
        return info.scope_of(plan) if info else PROGRAMS

    def rule_count(self) -> int:
        """Number of rules over all policy versions."""
        return sum(len(p.rules) for p in self._policies)

    def policy_versions(self) -> tuple[Policy, ...]:
        """Every compiled policy version, in load order."""
        return self._policies

    def policies(self) -> list[dict[str, Any]]:
        """Metadata of every policy with its versions, sorted by id."""
        return [_describe(versions) for versions in self._by_id.values()]

    def policy(self, policy_id: str) -> dict[str, Any] | None:
        """Metadata of one policy with its versions, or None when no policy has that id."""
        versions = self._by_id.get(policy_id)
        return _describe(versions) if versions else None

    def policy_version(self, policy_id: str, version: str) -> Policy | None:
        """The compiled version ``version`` of policy ``policy_id`` (as a decision's ``policies``
        name it), or None."""
        return next((p for p in self._by_id.get(policy_id, ()) if p.version == version), None)

    def policy_count(self) -> int:
        """Number of distinct policy ids (a policy may have several versions)."""
        return len(self._by_id)

    def _in_wide_ranges(self, payer: str, code: str, listed: Iterable[Policy]) -> list[Policy]:
        """Policy versions of ``payer`` whose unexpanded ranges hold ``code``, other than ``listed``."""
        parts = code_parts(code)
        if parts is None:
            return []
        prefix, number, suffix, width = parts
        seen = {id(p) for p in listed}
        found = []
        for r, p in self._wide.get((payer, prefix, suffix, width, number // _BUCKET), ()):
            if r.low <= number <= r.high and id(p) not in seen:
                seen.add(id(p))
                found.append(p)
        return found

    def select(self, payer: str, plan: str | None, line: Line, day: dt.date) -> tuple[Policy, ...]:
        """The policies that decide ``line`` on ``day`` for ``plan`` (see docs/authoring.md)."""
        key = (payer, plan, line.code, day)
        chosen = self._selections.get(key)
        if chosen is None:
            return self._select_anew(key)
        self._select_hits += 1
        return chosen

    def _select_anew(self, key: tuple[str, str | None, str, dt.date]) -> tuple[Policy, ...]:
        """The selection for ``key`` (payer, plan, code, date) the memo does not hold: computed,
        counted as a miss and remembered."""
        self._select_misses += 1
        chosen = self._select(*key)
        if len(self._selections) >= SELECT_CACHE_SIZE:
            self._selections.clear()  # a full memo starts again: cheaper than LRU bookkeeping per hit
        self._selections[key] = chosen
        return chosen

    def policies_for(self, payer: str, plan: str | None, code: str, day: dt.date) -> tuple[Policy, ...]:
        """The policies that decide ``code`` on ``day`` for ``plan`` (:meth:`select` by code)."""
        return self._select(payer, plan, code, day)

    def select_cache_info(self) -> dict[str, int]:
        """Hits, misses and size of the selection cache."""
        return {"hits": self._select_hits, "misses": self._select_misses, "size": len(self._selections),
                "maxsize": SELECT_CACHE_SIZE}

    def _select(self, payer: str, plan: str | None, code: str, day: dt.date) -> tuple[Policy, ...]:
        listed = self._listed.get((payer, code), ())
        in_force = [p for p in (*listed, *self._in_wide_ranges(payer, code, listed))
                    if p.in_force(day) and p.governs(code, day)]
        if plan is None:
            return tuple(p for p in in_force if p.extends is None)
        chosen = [p for p in in_force if p.plans is None or plan in p.plans]
        overridden = {p.extends for p in chosen if p.extends}
        return tuple(p for p in chosen if p.id not in overridden)

    def evaluate(self, body: Any, today: dt.date | None = None, *, remember: bytes | None = None) -> dict[str, Any]:
        """Answer a v1 request (a parsed JSON object) with the v1 response; see docs/api.md.

        Every answer is computed, unless the caller passes ``remember``: the request as it was
        received (its exact JSON bytes, or :func:`engine.evaluation.memo.fingerprint` of ``body``). The answer is
        then kept under those bytes and the day, and the same bytes again get a copy of it from a
        per-rule-set cache (see engine/evaluation/memo.py)."""
        day = today or current_day()
        if remember is not None and len(remember) <= MAX_KEY_BYTES:
            return self._remembered(body, day, remember)
        request = parse_request(body, day)
        if request.payer not in self._payers:
            raise RequestError("payer", f"unknown payer '{request.payer}'; this rule set knows "
                                        f"{', '.join(self.payers()) or 'no payers'}")
        if request.plan is not None and request.plan not in self._plans[request.payer]:
            self._refuse_plan(request.payer, request.plan)
        return {"ruleset": self.digest, "as_of": request.as_of.isoformat(), "decisions": self.decide(request)}

    def _refuse_plan(self, payer: str, plan: str) -> NoReturn:
        """Raise the RequestError for a plan ``payer`` does not know, naming the plans it knows."""
        known = sorted(self._plans[payer])
        if not known:
            raise RequestError("plan", f"unknown plan '{plan}': payer '{payer}' has no plans in this rule set; "
                                       "send no plan")
        raise RequestError("plan", f"unknown plan '{plan}' for payer '{payer}'{did_you_mean(plan, known)}; "
                                   f"its plans are {', '.join(known)}")

    def _remembered(self, body: Any, day: dt.date, remember: bytes) -> dict[str, Any]:
        """The answer kept under ``remember`` and ``day``, else the answer computed and kept."""
        key = day.toordinal().to_bytes(3, "big") + remember
        kept = self._answers.get(key)
        if kept is not None:
            return kept  # type: ignore[no-any-return]
        response = self.evaluate(body, day)
        if body.get("explain") is not True:  # traces are too big to keep
            self._answers.put(key, response)
        return response

    def clear_caches(self, answers_only: bool = False) -> None:
        """Forget remembered answers and, unless ``answers_only``, selections (for measurements)."""
        if not answers_only:
            self._selections.clear()
        self._answers.clear()

    def answer_cache_info(self) -> dict[str, int]:
        """Hits, misses and size of the cache of answers to repeated requests."""
        return self._answers.info()

    def decide(self, request: Request) -> list[dict[str, Any]]:
        """The v1 decision of each line of a parsed request (its payer known to this rule set)."""
        decisions = []
        for line in request.lines:  # a loop, not a comprehension: CPython 3.11 sets one up per call
            decisions.append(self._decide(request, line))
        return decisions

    def _decide(self, request: Request, line: Line) -> dict[str, Any]:
        selection = (request.payer, request.plan, line.code, request.as_of)
        policies = self._selections.get(selection)  # select()'s hit path, inline: one frame less per line
        if policies is None:
            policies = self._select_anew(selection)
        else:
            self._select_hits += 1
        key = None
        if not request.explain:
            if not policies:  # unlisted: the answer of the payer's scope, its reason naming the code and date
                template = self._templates.get(request.payer if request.payer not in self._plan_scoped
                                               else (request.payer, request.plan))  # _unlisted_key, inline
                if template is not None:
                    reason = self._fixed_reasons.get(request.payer) or self._unlisted_reason(request, line)
                    return template[0](line.code, line.system, [reason])
            else:
                key = _policy_key(policies[0], line.facts) if len(policies) == 1 else _template_key(policies, line.facts)
                template = self._templates.get(key)
                if template is not None and not (request.authorizations and template[1]):
                    return template[0](line.code, line.system)
        return self._decide_in_full(request, line, policies, key)

    def _decide_in_full(self, request: Request, line: Line, policies: tuple[Policy, ...],
                        key: Hashable | None = None) -> dict[str, Any]:
        """The decision computed from the rules; ``key`` is the line's template key (computed by
        :meth:`_decide` without explain), under which the decision is remembered."""
        trace: list[dict[str, Any]] = []
        sink = None
        if request.explain:
            def sink(policy: Policy, rule: Rule, result: bool | None) -> None:
                trace.append(rule_trace(policy, rule, result, line.facts))
            trace += [pause_trace(p, z) for p in policies if (z := p.pause_on(request.as_of)) is not None]
        if policies:
            answer = combine([run_policy(p, line.facts, sink) for p in policies])
            authorizable = may_be_authorized(answer)
            apply_authorizations(answer, line, request.as_of, request.authorizations)
        else:
            answer = self._unlisted(request, line)
        decision = _render(line, answer, request.explain)
        if request.explain:
            decision["trace"] = trace
        elif not policies:
            self._remember(self._unlisted_key(request), decision, False, ("reasons",))
        elif answer.authorization is None and key is not None:
            self._remember(key, decision, authorizable)
        return decision

    def _remember(self, key: Hashable, decision: dict[str, Any], authorizable: bool,
                  holes: tuple[str, ...] = ()) -> None:
        """Keep ``decision`` as the template of the lines with ``key``: a builder taking code, system
        and the ``holes``, with whether an authorization on file could change it. A full memo starts
        again, as the selection memo does."""
        if len(self._templates) >= TEMPLATE_CACHE_SIZE:
            self._templates.clear()
        tail = {name: value for name, value in decision.items() if name not in ("code", "system")}
        self._templates[key] = (compile_builder(("code", "system"), tail, holes), authorizable)

    def _unlisted_key(self, request: Request) -> Hashable:
        """The template key of the request's unlisted lines: the payer, with the plan when the
        payer's plans declare scopes of their own (a str never equals a policy's tuple key)."""
        return request.payer if request.payer not in self._plan_scoped else (request.payer, request.plan)

    def _unlisted(self, request: Request, line: Line) -> Answer:
        """The answer for a line no policy lists: from the payer's default when its rules are its
        complete prior-authorization list, else ``unknown`` (covreq holds only some programs)."""
        reasons = [self._unlisted_reason(request, line)]
        if self.scope(request.payer, request.plan) != COMPLETE:
            return Answer(UNKNOWN, UNKNOWN, reasons=reasons, possible={UNKNOWN})
        info = self._payer_info[request.payer]
        default = info.default or _NO_AUTH
        return Answer(default.pa_needed, default.covered, reasons=reasons, possible={default.pa_needed})

    def _unlisted_reason(self, request: Request, line: Line) -> str:
        """Why a line no policy lists answers as it does, in words a front desk can act on: the
        code is not on the payer's list (complete scope), or covreq does not know (programs only).
        The payer's ``default.reason`` replaces either."""
        if request.payer in self._fixed_reasons:
            return self._fixed_reasons[request.payer]
        payer = self.payer_title(request.payer)
        plan = f" for {self.plan_title(request.payer, request.plan)}" if request.plan else ""
        if self.scope(request.payer, request.plan) == COMPLETE:
            default = self._payer_info[request.payer].default or _NO_AUTH
            if default.pa_needed == NO_AUTH:
                return f"{line.code} is not on {payer}'s prior-authorization list{plan}: no prior authorization is needed."
            return (f"{line.code} is named by no {payer} policy{plan}; {payer}'s rules answer every code they do "
                    f"not name {default.pa_needed}.")
        return (f"covreq does not know whether {line.code} needs prior authorization{plan}: the rules it holds "
                f"for {payer} are some of its prior-authorization programs, not its whole list, and none "
                f"in force on {request.as_of.isoformat()} lists this code. Ask {payer}.")


#: A complete list's answer for a code it does not list when ``_payer.yaml`` gives no default.
_NO_AUTH = Outcome()


def _template_key(policies: tuple[Policy, ...], facts: Mapping[str, Any]) -> tuple[Hashable, ...]:
    """What the decision of a line by several ``policies`` depends on besides its code and system
    (and the authorizations on file): for each policy, what :func:`_policy_key` says. (A line one
    policy decides takes that policy's key itself: an int leads it, never a tuple as here.)"""
    key = []
    for policy in policies:  # a loop, not a comprehension: CPython 3.11 sets one up per call
        key.append(_policy_key(policy, facts))
    return tuple(key)


def _policy_key(policy: Policy, facts: Mapping[str, Any]) -> tuple[Hashable, ...]:
    """What ``policy``'s answer for a line depends on: the pause in force on the date of service;
    else the deciding rule, the rules unknown before it, which of their facts the line leaves
    unsettled, and the values of the documentation conditions of every outcome it may answer."""
    if policy.pauses:
        pause = policy.pause_on(facts["date_of_service"])
        if pause is not None:
            return id(policy), id(pause)
    index, unknown_at, states = policy.program.run(facts)
    if not unknown_at:
        return id(policy), index, states
    rules = policy.rules
    unsettled_facts = tuple([unsettled(fact_of(facts, f)) for i in unknown_at for f in rules[i].facts])
    pending = tuple([test.run(facts) for i in unknown_at for test in rules[i].outcome.conditions])
    return id(policy), index, states, unknown_at, unsettled_facts, pending


def _render(line: Line, answer: Answer, explain: bool = False) -> dict[str, Any]:
    """The v1 decision of ``answer``. A documentation item owed only under conditions says when in
    plain English (``required_when``); with ``explain``, also as the conditions' text (``condition``)."""
    documentation: dict[str, dict[str, Any]] = {}
    unconditional: set[str] = set()
    for ref, policy, conditions in answer.documentation:
        item = policy.documentation[ref.id]
        entry = documentation.setdefault(ref.id, {"id": item.id, "text": item.text, "kind": item.kind})
        if not conditions:
            unconditional.add(ref.id)
            entry.pop("required_when", None)
            entry.pop("condition", None)
        elif ref.id not in unconditional:
            entry["required_when"] = needed_when(conditions, policy.value_sets, policy.value_set_titles)
            if explain:
                entry["condition"] = " and ".join(f"({c})" if len(conditions) > 1 else c for c in conditions)
    decision: dict[str, Any] = {
        "code": line.code, "system": line.system, "pa_needed": answer.pa_needed, "covered": answer.covered,
        "documentation": list(documentation.values()), "info_needed": sorted(answer.info_needed),
        "reasons": answer.reasons, "policies": [p.summary() for p in answer.policies],
    }
    if CONDITIONAL in (answer.pa_needed, answer.covered):
        decision["possible"] = sorted(answer.possible)
    if answer.authorization:
        decision["authorization"] = answer.authorization
    questionnaires = sorted({p.questionnaire for p in answer.policies if p.questionnaire})
    if questionnaires:
        decision["questionnaire"] = questionnaires
    return decision


def _describe(versions: tuple[Policy, ...]) -> dict[str, Any]:
    latest = max(versions, key=lambda p: p.effective)
    return {
        "id": latest.id, "title": latest.title, "payer": latest.payer,
        "plans": sorted(latest.plans) if latest.plans else None, "extends": latest.extends,
        "versions": [{"version": p.version, "effective": p.effective.isoformat(),
                      "end": p.end.isoformat() if p.end else None, "url": p.url, "citation": p.citation,
                      "file": p.location.path, "rules": len(p.rules),
                      "pauses": [{"start": z.start.isoformat(), "end": z.end.isoformat() if z.end else None,
                                  "reason": z.reason, "url": z.url or None} for z in p.pauses]}
                     for p in sorted(versions, key=lambda p: p.effective)],
    }


def load(path: str | Path) -> RuleSet:
    """Load and compile the rule tree at ``path``; raise :class:`LoadError` listing every problem."""
    with loading():
        tree = read_tree(path)
        if tree.problems:
            raise LoadError(tree.problems)
        return RuleSet(tree.policies, tree.payers, tree.digest, str(path))
