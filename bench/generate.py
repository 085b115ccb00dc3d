"""Synthetic rule trees shaped like real payer policy sets, and a fixed mix of requests against them.

A tree has payers x plans x policies. Each policy lists exact codes, short ranges (expanded at load),
now and then a wide range (kept as an interval) or a dated code group, defines value sets, and has
2-6 rules drawn from the condition forms real policies use. Policies come in one to three effective
versions (one file each, consecutive periods), and some have a plan override (``extends``).
Everything is seeded, so a size always gives the same tree and the same requests.
"""
from __future__ import annotations

import datetime as dt
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PLANS = ("commercial", "medicare-advantage", "medicaid-managed")
#: Codes that no generated policy lists: requests use them for misses.
UNLISTED = ("99499", "0999T", "V2799")
_FIRST_DAY = dt.date(2019, 1, 1)
_VERSION_YEARS = 2
_HCPCS_LETTERS = "ABCEGJKLQ"
_ICD_STEMS = ("H02.83", "M54.5", "M47.81", "G43.7", "E11.9", "I83.0", "L89.1", "S72.0", "Z96.64", "C50.9")
_POS_SETS = {"opd_pos": ["19", "22"], "pa_settings": ["11", "19", "22", "24"], "facility": ["21", "22", "23"]}
_DOC_KINDS = ("clinical", "clinical", "admin", "patient")


@dataclass
class Listing:
    """A code a policy lists, with the payer, plans and dates it applies to (for building requests)."""

    payer: str
    code: str
    plans: tuple[str, ...] | None
    first: dt.date
    last: dt.date


@dataclass
class Tree:
    """A generated tree on disk and what requests may aim at."""

    root: Path
    rules: int
    files: int
    payers: list[str]
    listings: list[Listing] = field(default_factory=list)


class _Codes:
    """Hands out codes for one payer: mostly fresh, sometimes shared with an earlier policy."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.used: list[str] = []
        self.next_cpt = rng.randrange(10000, 20000)
        self.next_hcpcs = {letter: rng.randrange(100, 1000) for letter in _HCPCS_LETTERS}

    def _fresh(self, count: int) -> list[str]:
        if self.rng.random() < 0.6 and self.next_cpt + count < 99000:
            first, self.next_cpt = self.next_cpt, self.next_cpt + count + self.rng.randrange(1, 40)
            return [f"{n:05d}" for n in range(first, first + count)]
        letter = self.rng.choice(_HCPCS_LETTERS)
        first = self.next_hcpcs[letter]
        if first + count >= 9999:
            return self._fresh_cpt_only(count)
        self.next_hcpcs[letter] = first + count + self.rng.randrange(1, 20)
        return [f"{letter}{n:04d}" for n in range(first, first + count)]

    def _fresh_cpt_only(self, count: int) -> list[str]:
        first, self.next_cpt = self.next_cpt, self.next_cpt + count + 1
        return [f"{n % 90000 + 10000:05d}" for n in range(first, first + count)]

    def exact(self) -> str:
        """One code; about one in twenty is shared with an earlier policy of the payer."""
        if self.used and self.rng.random() < 0.05:
            return self.rng.choice(self.used)
        code = self._fresh(1)[0]
        self.used.append(code)
        return code

    def short_range(self) -> tuple[str, list[str]]:
        """A range of 2-20 codes, written ``A-B``."""
        codes = self._fresh(self.rng.randrange(2, 21))
        self.used.extend(codes)
        return f"{codes[0]}-{codes[-1]}", codes

    def wide_range(self) -> tuple[str, list[str]]:
        """A range of 2,500-6,000 CPT codes (beyond the expansion limit, so kept as an interval)."""
        first = self.rng.randrange(20000, 90000)
        last = first + self.rng.randrange(2500, 6000)
        return f"{first:05d}-{last:05d}", [f"{first:05d}", f"{(first + last) // 2:05d}", f"{last:05d}"]


def _condition(rng: random.Random, value_sets: dict[str, list[str]], codes: list[str]) -> str:
    """One rule condition, in one of the forms real policies use."""
    pos_set = rng.choice([name for name in value_sets if name in _POS_SETS])
    forms = [
        lambda: f"place_of_service not in {pos_set}",
        lambda: 'known(type_of_bill) and type_of_bill not in {"13*"}',
        lambda: 'provider.exemptions contains "gold-card"',
        lambda: f"patient.age < {rng.choice([18, 21, 65])}",
        lambda: "not (diagnoses overlaps covered_dx)",
        lambda: "diagnoses overlaps covered_dx and patient.age >= 18",
        lambda: 'modifiers overlaps {"50", "RT", "LT"} and units > 1',
        lambda: f"code in {{{', '.join(rng.sample(codes, min(2, len(codes))))}}} and not (other_codes overlaps pair_codes)",
        lambda: 'provider.network == "out" or state in {"NY", "NJ", "CT"}',
        lambda: f"date_of_service >= {rng.choice(['2021-01-01', '2022-07-01', '2024-01-01'])} and units >= {rng.choice([2, 4, 10])}",
        lambda: 'patient.sex == "female" and stage == "trial"',
    ]
    return rng.choice(forms)()


def _rules(rng: random.Random, count: int, value_sets: dict[str, list[str]], codes: list[str],
           docs: list[str]) -> list[dict[str, Any]]:
    """``count`` rules: exemptions answering no-auth, then (usually) a final requirement."""
    rules: list[dict[str, Any]] = []
    for i in range(count - 1):
        rules.append({"id": f"r{i + 1}", "when": _condition(rng, value_sets, codes),
                      "pa_needed": rng.choice(["no-auth", "no-auth", "auth-needed"]),
                      "reason": f"Synthetic rule {i + 1}: the stated condition decides."})
    last: dict[str, Any] = {"id": "requirement", "when": "true", "pa_needed": "auth-needed",
                            "reason": "The service needs prior authorization under this policy."}
    if rng.random() < 0.2:
        last["when"] = _condition(rng, value_sets, codes)
    last["documentation"] = [docs[0], *([{"id": docs[1], "when": "diagnoses overlaps covered_dx"}]
                                        if len(docs) > 1 else [])]
    rules.append(last)
    return rules


def _policy(rng: random.Random, pid: str, payer: str, codes: _Codes) -> tuple[dict[str, Any], list[str]]:
    """One policy's content (without dates) and the codes requests may use with it."""
    items: list[Any] = []
    listed: list[str] = []
    for _ in range(rng.randrange(1, 6)):
        code = codes.exact()
        items.append(code)
        listed.append(code)
    for _ in range(rng.randrange(0, 3)):
        text, members = codes.short_range()
        items.append(text)
        listed.extend(members)
    if rng.random() < 0.02:
        text, members = codes.wide_range()
        items.append(text)
        listed.extend(members)
    value_sets: dict[str, list[str]] = {name: members for name, members in _POS_SETS.items() if rng.random() < 0.7}
    value_sets.setdefault("opd_pos", _POS_SETS["opd_pos"])
    value_sets["covered_dx"] = [f"{stem}*" for stem in rng.sample(_ICD_STEMS, 3)]
    value_sets["pair_codes"] = rng.sample(listed, min(2, len(listed)))
    docs = {f"doc-{i}": {"text": f"Synthetic documentation item {i}", "kind": rng.choice(_DOC_KINDS)}
            for i in range(rng.randrange(2, 6))}
    data = {"id": pid, "title": f"Synthetic policy {pid}", "payer": payer,
            "source": {"url": f"https://example.org/policies/{pid}", "citation": "synthetic"},
            "codes": items, "value_sets": value_sets, "documentation": docs}
    return data, listed


def _yaml_scalar(value: Any) -> str:
    if isinstance(value, str) and value in ("true", "false"):
        return value
    return json.dumps(value) if isinstance(value, (str, list, dict)) else str(value)


def _to_yaml(data: dict[str, Any]) -> str:
    """Block-style YAML with flow-style leaves, as authors write policies (JSON scalars are YAML)."""
    lines = ["# yaml-language-server: $schema=https://covreq.dev/schema/policy.schema.json"]
    for key, value in data.items():
        if key == "rules":
            lines.append("rules:")
            for rule in value:
                first = True
                for rkey, rvalue in rule.items():
                    lines.append(f"  {'- ' if first else '  '}{rkey}: {_yaml_scalar(rvalue)}")
                    first = False
        elif isinstance(value, dict) and key in ("value_sets", "documentation", "source"):
            lines.append(f"{key}:")
            lines.extend(f"  {k}: {_yaml_scalar(v)}" for k, v in value.items())
        else:
            lines.append(f"{key}: {_yaml_scalar(value)}")
    return "\n".join(lines) + "\n"


def generate(rules: int, root: Path, seed: int = 7) -> Tree:
    """Write a tree of about ``rules`` rules (counted as written in files) under ``root``."""
    rng = random.Random(seed)
    payers = [f"payer-{i:02d}" for i in range(max(2, min(20, rules // 5000)))]
    allocators = {payer: _Codes(random.Random(rng.random())) for payer in payers}
    tree = Tree(root, 0, 0, payers)
    for payer in payers:
        (root / payer).mkdir(parents=True, exist_ok=True)
        (root / payer / "_payer.yaml").write_text(
            f"payer: {payer}\ntitle: Synthetic payer {payer}\nscope: complete\n"
            "default: {pa_needed: no-auth, reason: \"No policy of this payer lists the code.\"}\n")
    number = 0
    while tree.rules < rules:
        payer = payers[number % len(payers)]
        pid = f"{payer}-p{number:06d}"
        number += 1
        base, listed = _policy(rng, pid, payer, allocators[payer])
        plans = tuple(rng.sample(PLANS, rng.randrange(1, 3))) if rng.random() < 0.5 else None
        if plans:
            base["plans"] = list(plans)
        versions = rng.choices([1, 2, 3], weights=[5, 3, 2])[0]
        for v in range(versions):
            start = _FIRST_DAY.replace(year=_FIRST_DAY.year + v * _VERSION_YEARS)
            end = None if v == versions - 1 else start.replace(year=start.year + _VERSION_YEARS) - dt.timedelta(days=1)
            data = {**base, "version": f"v{v + 1}", "effective": start.isoformat(),
                    **({"end": end.isoformat()} if end else {}),
                    "rules": _rules(rng, rng.randrange(2, 7), base["value_sets"], listed, list(base["documentation"]))}
            _write(tree, root / payer / f"{pid}-v{v + 1}.yaml", data)
        last = dt.date(2030, 12, 31)
        tree.listings.extend(Listing(payer, code, plans, _FIRST_DAY, last) for code in listed)
        if rng.random() < 0.1:
            plan = rng.choice(PLANS)
            child = {"id": f"{pid}-{plan}", "title": f"{base['title']} ({plan})", "extends": pid, "payer": payer,
                     "plans": [plan], "version": "override", "effective": "2021-01-01",
                     "source": {"url": f"https://example.org/policies/{pid}/{plan}"},
                     "rules": [{"id": "plan-exempt", "when": 'provider.network == "in" and patient.age >= 65',
                                "pa_needed": "no-auth", "reason": "The plan waives this requirement in network."}]}
            _write(tree, root / payer / f"{pid}-{plan}.yaml", child)
            tree.listings.extend(Listing(payer, code, (plan,), dt.date(2021, 1, 1), last) for code in listed)
    return tree


def _write(tree: Tree, path: Path, data: dict[str, Any]) -> None:
    path.write_text(_to_yaml(data), encoding="utf-8")
    tree.rules += len(data["rules"])
    tree.files += 1


def _full_facts(rng: random.Random) -> dict[str, Any]:
    """Every fact a condition may read, so that each answer is definite."""
    return {
        "place_of_service": rng.choice(["11", "19", "21", "22", "24"]),
        "type_of_bill": rng.choice(["131", "13X", "111"]),
        "state": rng.choice(["NY", "CA", "TX"]),
        "patient": {"birth_date": rng.choice(["1950-02-01", "1988-07-15", "2012-11-30"]),
                    "sex": rng.choice(["female", "male"])},
        "diagnoses": rng.sample(["H02.831", "M54.50", "E11.9", "R51.9", "Z00.00"], 2),
        "provider": {"npi": "1234567893", "specialty": "207R00000X", "network": rng.choice(["in", "out"]),
                     "exemptions": rng.choice([[], ["gold-card"]])},
    }


def _line(rng: random.Random, code: str, full: bool) -> dict[str, Any]:
    line: dict[str, Any] = {"code": code}
    if full:
        line.update(modifiers=rng.choice([[], ["50"], ["RT"]]), units=rng.choice([1, 2, 4]),
                    stage=rng.choice(["trial", "initial"]))
    return line


def _day(rng: random.Random, listing: Listing) -> str:
    span = (min(listing.last, dt.date(2025, 12, 31)) - listing.first).days
    return (listing.first + dt.timedelta(days=rng.randrange(span + 1))).isoformat()


def request_mix(tree: Tree, count: int = 200, seed: int = 11) -> list[dict[str, Any]]:
    """A fixed mix of v1 requests: hits, misses, multi-line orders, plan overrides and unknown facts.

    Each request is tagged (``kind``, outside the v1 body) so results can be read per kind.
    """
    rng = random.Random(seed)
    kinds = ["hit"] * 8 + ["miss"] * 2 + ["multi"] * 3 + ["unknown"] * 3 + ["plan"] * 2
    mix = []
    for i in range(count):
        kind = kinds[i % len(kinds)]
        listing = rng.choice(tree.listings)
        if kind == "plan":
            listing = rng.choice([x for x in tree.listings if x.plans] or tree.listings)
        body: dict[str, Any] = {"payer": listing.payer, "date_of_service": _day(rng, listing)}
        if kind != "unknown":
            body.update(_full_facts(rng))
            if listing.plans:
                body["plan"] = rng.choice(listing.plans)
        if kind == "miss":
            body["services"] = [_line(rng, rng.choice(UNLISTED), True)]
        elif kind == "multi":
            same_payer = [x.code for x in tree.listings if x.payer == listing.payer]
            codes = [listing.code, *rng.sample(same_payer, min(3, len(same_payer))), rng.choice(UNLISTED)]
            body["services"] = [_line(rng, code, True) for code in codes]
        else:
            body["services"] = [_line(rng, listing.code, kind != "unknown")]
        mix.append({"kind": kind, "body": body})
    return mix
