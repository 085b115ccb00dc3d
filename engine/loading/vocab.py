"""The values a policy may name, where they are known, checked at load time: the plans a policy
lists, and the values a condition compares a fact with.

A plan must be one of the payer's (its ``_payer.yaml`` list, else the plans its policies name), a
place of service one of the CMS code set, a state a US state, district or territory code; a type of
bill and a modifier must be written as requests carry them. A literal outside its vocabulary makes
the test always false, so it is an error (``E-unknown-value``) located at the literal, with a
"did you mean". A value ending in ``*`` is a prefix and must begin some value of the vocabulary.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Iterator, Mapping

from engine.language import ast
from engine.errors import Problem, did_you_mean
from engine.loading.locate import condition_location, read_located
from engine.language.logic import analyse
from engine.policy import Location, PayerInfo, Policy, Rule, known_plans
from engine.loading.yamlsource import position_in_scalar

#: CMS place-of-service codes (https://www.cms.gov/medicare/coding-billing/place-of-service-codes).
PLACES_OF_SERVICE: dict[str, str] = {
    "01": "pharmacy", "02": "telehealth other than in the patient's home", "03": "school", "04": "homeless shelter",
    "05": "Indian Health Service free-standing facility", "06": "Indian Health Service provider-based facility",
    "07": "tribal 638 free-standing facility", "08": "tribal 638 provider-based facility",
    "09": "prison or correctional facility", "10": "telehealth in the patient's home", "11": "office", "12": "home",
    "13": "assisted living facility", "14": "group home", "15": "mobile unit", "16": "temporary lodging",
    "17": "walk-in retail health clinic", "18": "place of employment", "19": "off-campus outpatient hospital",
    "20": "urgent care facility", "21": "inpatient hospital", "22": "on-campus outpatient hospital",
    "23": "emergency room", "24": "ambulatory surgical center", "25": "birthing center",
    "26": "military treatment facility", "27": "outreach site or street", "31": "skilled nursing facility",
    "32": "nursing facility", "33": "custodial care facility", "34": "hospice", "41": "ambulance (land)",
    "42": "ambulance (air or water)", "49": "independent clinic", "50": "federally qualified health center",
    "51": "inpatient psychiatric facility", "52": "psychiatric facility, partial hospitalization",
    "53": "community mental health center", "54": "intermediate care facility for individuals with "
    "intellectual disabilities", "55": "residential substance abuse treatment facility",
    "56": "psychiatric residential treatment center", "57": "non-residential substance abuse treatment facility",
    "58": "non-residential opioid treatment facility", "60": "mass immunization center",
    "61": "comprehensive inpatient rehabilitation facility", "62": "comprehensive outpatient rehabilitation facility",
    "65": "end-stage renal disease treatment facility", "66": "PACE center", "71": "public health clinic",
    "72": "rural health clinic", "81": "independent laboratory", "99": "other place of service",
}
#: US states, the District of Columbia, territories and the armed forces' postal codes.
STATES = frozenset(
    "AL AK AZ AR CA CO CT DE FL GA HI ID IL IN IA KS KY LA ME MD MA MI MN MS MO MT NE NV NH NJ NM NY NC ND OH OK "
    "OR PA RI SC SD TN TX UT VT VA WA WV WI WY DC PR GU VI AS MP AA AE AP".split())
#: fact -> (the form a literal must have, how requests carry the fact), for facts known by form only.
SHAPES: dict[str, tuple[re.Pattern[str], str]] = {
    "type_of_bill": (re.compile(r"[1-9][0-9A-Z]{1,2}"), "two or three upper-case characters without a leading 0, "
                                                        "e.g. \"13X\" or \"131\""),
    "modifiers": (re.compile(r"[A-Z0-9]{2}"), "two upper-case letters or digits, e.g. \"RT\""),
    "patient.sex": (re.compile(r"[a-z]+"), "lower case, e.g. \"female\""),
}


def _listed(text: str, known: Iterable[str]) -> bool:
    """True when ``text`` is in ``known``, or is a prefix ``x*`` that some value of it begins with."""
    return any(value.startswith(text[:-1]) for value in known) if text.endswith("*") else text in known


def _shaped(text: str, shape: re.Pattern[str]) -> bool:
    """True when ``text`` has ``shape``, or is a prefix ``x*`` that a value of that shape can begin with."""
    if not text.endswith("*"):
        return shape.fullmatch(text) is not None
    stem = text[:-1]
    return any(shape.fullmatch(stem + tail) for tail in ("", "0", "00", "X", "XX", "A", "AA", "a", "aa")) or not stem


def _problem(fact: str, text: str, vocabularies: Mapping[str, Iterable[str]], payer: str) -> str | None:
    """Why ``text`` can never be a value of ``fact``, or None when it can (or the fact's values are open)."""
    if fact in SHAPES:
        shape, how = SHAPES[fact]
        return None if _shaped(text, shape) else f"\"{text}\" can never match {fact}, which requests carry as {how}"
    known = vocabularies.get(fact)
    if known is None or _listed(text, known):
        return None
    if fact == "plan":
        plans = sorted(known)
        what = f"a plan of payer '{payer}' ({'its plans are ' + ', '.join(plans) if plans else 'it has no plans'})"
    elif fact == "state":
        what = "a US state, district or territory code"
    else:
        what = "a CMS place-of-service code"
    return f"\"{text}\" is not {what}, so {fact} can never equal it{did_you_mean(text, known)}"


def _rule_problems(rule: Rule, policy: Policy, vocabularies: Mapping[str, Iterable[str]]) -> Iterator[Problem]:
    for node, fact, text in analyse(rule.when, policy.value_sets).setting_literals():
        message = _problem(fact, text, vocabularies, policy.payer)
        if message is not None:
            pos: ast.Pos = node.pos  # type: ignore[attr-defined]
            where = condition_location(rule, pos.line, pos.column)
            yield Problem(where.path, where.line, where.column, "E-unknown-value", f"rule '{rule.id}': {message}")


def _documentation_conditions(data: object) -> Iterator[tuple[tuple[object, ...], str]]:
    """(key, text) of every ``when`` of a documentation reference in a policy file's data: in its
    rules' and default's documentation, and in ``add_documentation``."""
    if not isinstance(data, dict):
        return
    default, rules = data.get("default"), data.get("rules")
    lists = [(("add_documentation",), data.get("add_documentation")),
             (("default", "documentation"), default.get("documentation") if isinstance(default, dict) else None),
             *((("rules", i, "documentation"), rule.get("documentation"))
               for i, rule in enumerate(rules if isinstance(rules, list) else ()) if isinstance(rule, dict))]
    for key, refs in lists:
        for j, ref in enumerate(refs if isinstance(refs, list) else ()):
            if isinstance(ref, dict) and isinstance(ref.get("when"), str):
                yield (*key, j, "when"), ref["when"]


def _documentation_problems(policy: Policy, vocabularies: Mapping[str, Iterable[str]]) -> Iterator[Problem]:
    """``E-unknown-value`` in the conditions of the policy's documentation references. The compiled
    conditions are checked; only a condition found wrong has its file read again, to locate it where
    the policy's own file writes it (an override's inherited ones are its base's to report)."""
    texts = dict.fromkeys(ref.when for outcome in (*(r.outcome for r in policy.rules), policy.default)
                          for ref in outcome.documentation if ref.when)
    for text in texts:
        found = [(node, message) for node, fact, literal in analyse(text, policy.value_sets).setting_literals()
                 if (message := _problem(fact, literal, vocabularies, policy.payer)) is not None]
        if found:
            yield from _located(policy.location.path, text, found)


def _located(path: str, text: str, found: list[tuple[ast.Expr, str]]) -> Iterator[Problem]:
    """The problems ``found`` in the documentation condition ``text``, at each place the file at
    ``path`` writes it."""
    data, locations, lines = read_located(path)
    for key, written in _documentation_conditions(data):
        spot = locations.get(key)
        if written != text or spot is None:
            continue
        for node, message in found:
            pos: ast.Pos = node.pos  # type: ignore[attr-defined]
            line, column = position_in_scalar(spot, pos.line, pos.column, list(lines))
            yield Problem(path, line, column, "E-unknown-value", f"documentation condition: {message}")


@dataclass(frozen=True)
class PlansNamed:
    """The plans one policy file names, where, and whose they are (its payer, or its base's)."""

    payer: str | None
    extends: str | None
    plans: tuple[str, ...]
    location: Location


def unlisted_plans(named: Iterable[PlansNamed], payers: Mapping[str, PayerInfo],
                   payer_of: Mapping[str, str]) -> list[Problem]:
    """``E-plan`` for each plan a policy names that its payer's ``_payer.yaml`` does not list (when
    that file lists plans); ``payer_of`` gives the payer of each policy a file may extend."""
    found = []
    for entry in named:
        payer = entry.payer or payer_of.get(entry.extends or "")
        info = payers.get(payer or "")
        if info is None or not info.lists_plans:
            continue
        for plan in entry.plans:
            if plan not in info.plans:
                where = entry.location
                found.append(Problem(where.path, where.line, where.column, "E-plan",
                                     f"plan '{plan}' is not one of {payer}'s plans in _payer.yaml "
                                     f"({', '.join(sorted(info.plans)) or 'none'}){did_you_mean(plan, info.plans)}"))
    return found


def unknown_values(policies: Iterable[Policy], payers: Mapping[str, PayerInfo]) -> list[Problem]:
    """``E-unknown-value`` problems of the rules of ``policies`` (each rule once, in its own file)."""
    policies = list(policies)
    plans = known_plans(policies, payers)
    problems: dict[Problem, None] = {}
    for policy in policies:
        vocabularies = {"plan": plans.get(policy.payer, frozenset()), "state": STATES,
                        "place_of_service": PLACES_OF_SERVICE, "trial_place_of_service": PLACES_OF_SERVICE}
        for rule in policy.rules:
            if rule.location.path == policy.location.path:  # an override's inherited rules are its base's
                problems.update(dict.fromkeys(_rule_problems(rule, policy, vocabularies)))
        problems.update(dict.fromkeys(_documentation_problems(policy, vocabularies)))
    return list(problems)
