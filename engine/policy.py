"""The compiled, immutable policy model that evaluation runs on."""
from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Iterable, Mapping

from engine.language.codes import CodeSet
from engine.language.codegen import Lazy

AUTH_NEEDED, NO_AUTH, CONDITIONAL, SATISFIED = "auth-needed", "no-auth", "conditional", "satisfied"
COVERED, NOT_COVERED = "covered", "not-covered"
#: ``pa_needed`` and ``covered`` of a line no policy lists when the payer's rules are not its whole
#: prior-authorization list: covreq does not know (never a guess at no-auth).
UNKNOWN = "unknown"
#: What a payer's rules hold (``scope`` in ``_payer.yaml``): its whole prior-authorization list, or
#: some of its programs only (the default: completeness is never assumed).
COMPLETE, PROGRAMS = "complete", "programs"


@dataclass(frozen=True, slots=True)
class Location:
    """A place in a rule file."""

    path: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.column}"


@dataclass(frozen=True, slots=True)
class DocItem:
    """An entry of a policy's documentation catalogue."""

    id: str
    text: str
    kind: str


@dataclass(frozen=True, slots=True)
class DocRef:
    """A rule's reference to a documentation item, optionally required only when ``test`` holds
    (a generated :data:`engine.language.codegen.ConditionProgram`, compiled on first use)."""

    id: str
    test: Lazy | None = None
    when: str | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a rule (or a policy default) answers."""

    pa_needed: str = NO_AUTH
    covered: str = COVERED
    documentation: tuple[DocRef, ...] = ()
    reason: str = ""
    #: The programs of the documentation conditions, in order (most outcomes have none).
    conditions: tuple[Lazy, ...] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "conditions", tuple(ref.test for ref in self.documentation if ref.test is not None))


@dataclass(frozen=True, slots=True)
class Rule:
    """One ordered rule: its condition (run by its policy's program) and its outcome."""

    id: str
    index: int
    when: str
    facts: frozenset[str]
    outcome: Outcome
    location: Location


@dataclass(frozen=True, slots=True)
class CodeGroup:
    """Codes a policy governs between optional dates of service (inclusive)."""

    codes: CodeSet
    effective: dt.date | None = None
    end: dt.date | None = None

    def in_force(self, day: dt.date) -> bool:
        """True when the group applies on ``day``."""
        return (self.effective is None or self.effective <= day) and (self.end is None or day <= self.end)


@dataclass(frozen=True, slots=True)
class Pause:
    """A period (dates of service, inclusive; open when ``end`` is None) when a program was paused."""

    start: dt.date
    end: dt.date | None
    reason: str
    url: str = ""

    def covers(self, day: dt.date) -> bool:
        """True when ``day`` falls inside the pause."""
        return self.start <= day and (self.end is None or day <= self.end)


@dataclass(frozen=True, slots=True)
class Policy:
    """One version of one policy, compiled."""

    id: str
    title: str
    payer: str
    version: str
    effective: dt.date
    end: dt.date | None
    url: str
    citation: str
    notes: str
    plans: frozenset[str] | None
    extends: str | None
    code_groups: tuple[CodeGroup, ...]
    rules: tuple[Rule, ...]
    default: Outcome
    documentation: Mapping[str, DocItem]
    value_sets: Mapping[str, tuple[str, ...]]
    #: Value set name -> its title, for the sets whose file gives one (read in plain English, engine/language/plain.py).
    value_set_titles: Mapping[str, str]
    auth_validity: tuple[int, str] | None  # (amount, "day" | "month"), start date counting as day 1
    questionnaire: str | None
    location: Location
    #: The rules as one generated :data:`engine.language.codegen.RuleProgram`, compiled on first use.
    program: Lazy
    files: tuple[str, ...] = field(default=())
    pauses: tuple[Pause, ...] = field(default=())
    #: ``authorization.automatic_affirmation``: PAS may certify a complete request without a reviewer.
    auto_affirm: bool = False
    #: The outcome of each rule, then the default: indexed by what the program answers.
    outcomes: tuple[Outcome, ...] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "outcomes", (*(rule.outcome for rule in self.rules), self.default))

    def in_force(self, day: dt.date) -> bool:
        """True when this version applies to a date of service ``day``."""
        return self.effective <= day and (self.end is None or day <= self.end)

    def pause_on(self, day: dt.date) -> Pause | None:
        """The pause that covers ``day``, if any: the program needs no prior authorization then."""
        return next((p for p in self.pauses if p.covers(day)), None)

    def governs(self, code: str, day: dt.date) -> bool:
        """True when a code group lists ``code`` and is in force on ``day``."""
        return any(code in g.codes and g.in_force(day) for g in self.code_groups)

    def summary(self) -> dict[str, object]:
        """The policy's citation as it appears in decisions."""
        return {"id": self.id, "title": self.title, "version": self.version, "url": self.url}


@dataclass(frozen=True, slots=True)
class PayerInfo:
    """Payer-wide settings from ``_payer.yaml``."""

    id: str
    title: str = ""
    default: Outcome | None = None
    #: Plan id -> display title.
    plans: Mapping[str, str] = field(default_factory=dict)
    #: What the payer's rules hold: :data:`COMPLETE` or :data:`PROGRAMS`.
    scope: str = PROGRAMS
    #: Plan id -> its own scope, for the plans whose ``_payer.yaml`` entry sets one.
    plan_scopes: Mapping[str, str] = field(default_factory=dict)
    #: Whether ``_payer.yaml`` lists the payer's plans (then no other plan is known).
    lists_plans: bool = False

    def scope_of(self, plan: str | None) -> str:
        """The scope for a request naming ``plan``; with no plan, complete only when every plan is."""
        if plan is not None:
            return self.plan_scopes.get(plan, self.scope)
        return self.scope if all(s == self.scope for s in self.plan_scopes.values()) else PROGRAMS


def known_plans(policies: Iterable[Policy], payers: Mapping[str, PayerInfo]) -> dict[str, frozenset[str]]:
    """The plans a request may name, by payer: those its ``_payer.yaml`` lists, else those its
    policies name (every payer of ``policies`` or ``payers`` has an entry, maybe empty)."""
    named: dict[str, set[str]] = defaultdict(set)
    for policy in policies:
        named[policy.payer].update(policy.plans or ())
    return {payer: frozenset(info.plans) if (info := payers.get(payer)) and info.lists_plans else frozenset(named[payer])
            for payer in {*named, *payers}}
