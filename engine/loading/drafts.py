"""Policy drafts: a file's content before compilation, and plan overrides merged with their base's
versions (``extends``)."""
from __future__ import annotations

import difflib
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.loading import files
from engine.loading.schema import check_schema, gate
from engine.loading.source import Problems, Source
from engine.loading.yamlsource import load_yaml
from engine.policy import Location


@dataclass
class Draft:
    """A policy version before compilation; pieces keep the source they came from."""

    source: Source
    data: dict[str, Any]
    rules: list[tuple[Source, tuple[object, ...]]] = field(default_factory=list)
    documentation: dict[str, tuple[Source, tuple[object, ...]]] = field(default_factory=dict)
    value_sets: dict[str, tuple[Source, tuple[object, ...]]] = field(default_factory=dict)
    codes: list[tuple[Source, tuple[object, ...]]] = field(default_factory=list)
    #: a plan override's rules tried after its base's
    rules_after: list[tuple[Source, tuple[object, ...]]] = field(default_factory=list)
    #: the source of each top-level key a plan override takes from its base
    inherited: dict[str, Source] = field(default_factory=dict)
    #: problem codes not to report: a file's own catalogue was left out for a schema problem, so its
    #: references to it would only repeat that problem
    follow_ons: frozenset[str] = frozenset()

    def at(self, key: str) -> Location:
        """Location of the top-level ``key``, in the file it comes from."""
        return self.inherited.get(key, self.source).at(key)

    @classmethod
    def of(cls, source: Source, left_out: frozenset[tuple[object, ...]] = frozenset()) -> "Draft":
        """A draft made of one file's own content, without the top-level keys and the entries of
        ``rules``, ``codes``, ``documentation`` and ``value_sets`` named in ``left_out``."""
        data = {k: v for k, v in source.data.items() if (k,) not in left_out}

        def keys(name: str) -> list[tuple[object, ...]]:
            entries = data.get(name, {})
            return [key for k in (range(len(entries)) if isinstance(entries, list) else entries)
                    if (key := (name, k)) not in left_out]

        return cls(source, data, [(source, key) for key in keys("rules")],
                   {str(key[1]): (source, key) for key in keys("documentation")},
                   {str(key[1]): (source, key) for key in keys("value_sets")},
                   [(source, key) for key in keys("codes")], [(source, key) for key in keys("rules_after")])

    def plain(self) -> dict[str, Any]:
        """The draft's own data as the schema sees it (left-out entries removed)."""
        src = self.source
        return {**self.data,
                **{name: [src.value_at(key) for _, key in entries]
                   for name, entries in (("rules", self.rules), ("codes", self.codes), ("rules_after", self.rules_after))
                   if name in self.data},
                **{name: {k: src.value_at(key) for k, (_, key) in entries.items()}
                   for name, entries in (("documentation", self.documentation), ("value_sets", self.value_sets))
                   if name in self.data}}


_ENTRIES = ("rules", "rules_after", "codes", "documentation", "value_sets")


def policy_draft(source: Source, problems: Problems) -> tuple[Draft | None, bool]:
    """The draft of a policy file and whether the file is valid. When a file's schema problems lie
    only in unknown top-level keys and in single entries of ``rules``, ``codes``, ``documentation``
    or ``value_sets``, the draft of its other parts is returned too, so that their problems (dates,
    conditions, codes) are reported with the schema's; otherwise the draft is None."""
    errors = check_schema(source, "policy.schema.json", problems)
    if not errors:
        return Draft.of(source), True
    left_out: set[tuple[object, ...]] = set()
    for error in errors:
        path = tuple(error.absolute_path)
        if not path and error.validator == "additionalProperties":
            left_out |= {(key,) for key in error.instance if key not in error.schema.get("properties", {})}
        elif len(path) >= 2 and path[0] in _ENTRIES:
            left_out.add(path[:2])
        else:
            return None, False
    draft = Draft.of(source, frozenset(left_out))
    draft.follow_ons = frozenset(code for catalogue, code in _CATALOGUES.items()
                                 if any(difflib.get_close_matches(str(key[0]), [catalogue], n=1) for key in left_out))
    return (draft if gate("policy.schema.json").is_valid(draft.plain()) else None), False


#: The catalogues of a policy and the problem raised by a reference to an entry missing from them.
_CATALOGUES = {"documentation": "E-unknown-doc", "value_sets": "E-unknown-value-set"}


class Kept:
    """A valid policy file remembered by its path and a hash of its bytes until the plan overrides
    are merged, and read again only when one extends it or is it: no file's text is held through
    the whole read (the texts of 100,000 rules are 38 MB)."""

    def __init__(self, shown: str, raw: bytes) -> None:
        self.shown, self.hash = shown, hashlib.blake2b(raw, digest_size=16).digest()

    def draft(self, problems: Problems) -> Draft | None:
        """The file's draft, read again; None, with an ``E-io`` problem, when it cannot be read any
        more or its bytes are no longer those read first."""
        try:
            raw = files.read_bytes(Path(self.shown))
        except OSError as exc:
            problems.add(Location(self.shown, 1, 1), "E-io", exc.strerror or str(exc))
            return None
        if hashlib.blake2b(raw, digest_size=16).digest() != self.hash:
            problems.add(Location(self.shown, 1, 1), "E-io", "the file changed while the tree was being read; "
                                                             "load the tree again")
            return None
        text = raw.decode("utf-8")
        data, locations = load_yaml(text)
        return Draft.of(Source(self.shown, data, locations, text))

    @staticmethod
    def drafted(kept: "Draft | Kept", problems: Problems) -> Draft | None:
        """The draft of a file kept either way (see :meth:`draft`)."""
        return kept if isinstance(kept, Draft) else kept.draft(problems)


def extend(child: Draft, bases: list[Draft], problems: Problems) -> list[Draft]:
    """The plan-specific policy ``child`` merged with every version of its base; ``bases`` are the
    drafts whose id it extends, in file order."""
    base_id = child.data["extends"]
    where = child.source.at("extends")
    if not bases:
        problems.add(where, "E-extends", f"base policy '{base_id}' is not defined in this tree")
    elif any(b.data.get("extends") for b in bases):
        problems.add(where, "E-extends", f"base policy '{base_id}' itself extends another policy")
    elif base_id == child.data["id"]:
        problems.add(where, "E-extends", "a policy cannot extend itself")
    elif child.data.get("payer", bases[0].data["payer"]) != bases[0].data["payer"]:
        problems.add(child.source.at("payer"), "E-extends",
                     f"a policy must have its base's payer '{bases[0].data['payer']}'")
    else:
        return [m for base in bases if (m := _merge(child, base))]
    return []


def _merge(child: Draft, base: Draft) -> Draft | None:
    """The child laid over one base version, limited to the dates both are in force."""
    start = max(child.data.get("effective", base.data["effective"]), base.data["effective"])
    ends = [d for d in (child.data.get("end"), base.data.get("end")) if d]
    end = min(ends) if ends else None
    if end is not None and end < start:
        return None
    data = {**base.data, **child.data, "effective": start, "end": end}
    version = f"{child.data.get('version', '')}+{base.data.get('version', '')}".strip("+")
    data["version"] = version
    rules = child.rules + (base.rules if child.data.get("inherit_rules", True) else []) + child.rules_after
    inherited = {key: base.source for key in base.data if key not in child.data}
    if start != child.data.get("effective"):
        inherited["effective"] = base.source
    if end is not None and end != child.data.get("end"):
        inherited["end"] = base.source
    return Draft(child.source, data, rules, {**base.documentation, **child.documentation},
                 {**base.value_sets, **child.value_sets}, child.codes if "codes" in child.data else base.codes,
                 [], inherited, child.follow_ons | base.follow_ons)
