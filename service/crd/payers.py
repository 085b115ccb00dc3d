"""The payer mapping: which covreq payer (and plan) a FHIR Coverage belongs to."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from service.fhir.index import ResourceIndex
from service.fhir.values import as_list, codings, contained
from service.settings import read_config

COVERAGE_CLASS = "http://terminology.hl7.org/CodeSystem/coverage-class"


@dataclass(frozen=True)
class PayerEntry:
    """One payer of the mapping file."""

    payer: str
    label: str
    identifiers: frozenset[tuple[str, str]] = field(default_factory=frozenset)
    names: frozenset[str] = field(default_factory=frozenset)
    plans: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class CoveragePayer:
    """What a Coverage says about its payer: the payer's name, and the match if there is one."""

    label: str
    payer: str | None = None
    plan: str | None = None
    identifiers: frozenset[tuple[str, str]] = field(default_factory=frozenset)
    #: The plan the Coverage names (its plan class's value or name), mapped or not.
    plan_class: str | None = None


class PayerMap:
    """Payer identifiers (and, when the operator opts in, names) -> covreq payer ids, from YAML."""

    def __init__(self, entries: list[PayerEntry], match_by_name: bool = False) -> None:
        self.entries, self.match_by_name = entries, match_by_name

    @classmethod
    def load(cls, path: Path) -> "PayerMap":
        """Read and check a mapping file; raises ValueError naming the file and the bad entry."""
        data = read_config(Path(path)) or {}
        if not isinstance(data, dict) or not isinstance(data.get("payers"), list):
            raise ValueError(f"{path}: expected a mapping with a list under 'payers'")
        match_by_name = data.get("match_by_name", False)
        if not isinstance(match_by_name, bool):
            raise ValueError(f"{path}: 'match_by_name' must be true or false")
        return cls([cls._entry(path, i, item) for i, item in enumerate(data["payers"])], match_by_name)

    @staticmethod
    def _entry(path: Path, index: int, item: Any) -> PayerEntry:
        where = f"{path}: payers[{index}]"
        if not isinstance(item, dict) or not isinstance(item.get("payer"), str):
            raise ValueError(f"{where}: needs a string 'payer'")
        identifiers = item.get("identifiers") or []
        if not all(isinstance(i, dict) and {"system", "value"} <= i.keys() for i in identifiers):
            raise ValueError(f"{where}: each identifier needs 'system' and 'value'")
        plans = item.get("plans") or {}
        if not isinstance(plans, dict):
            raise ValueError(f"{where}: 'plans' must map plan names to covreq plan ids")
        return PayerEntry(
            payer=item["payer"], label=str(item.get("label") or item["payer"]),
            identifiers=frozenset((str(i["system"]), str(i["value"])) for i in identifiers),
            names=frozenset(str(n).casefold() for n in item.get("names") or []),
            plans={str(k).casefold(): str(v) for k, v in plans.items()})

    def identify(self, coverage: dict[str, Any], index: ResourceIndex) -> CoveragePayer:
        """The covreq payer and plan of a Coverage, or only what it says of its payer when nothing
        matches. Identifiers (on the payor Reference, or on its Organization: contained, in the
        prefetch or read from the EHR) decide; names only when the file sets ``match_by_name: true``."""
        names: list[str] = []
        identifiers: set[tuple[str, str]] = set()
        for payor in as_list(coverage.get("payor")):
            if not isinstance(payor, dict):
                continue
            organization = contained(coverage, payor, "Organization") or index.resolve(payor, "Organization") or {}
            names += [n for n in (payor.get("display"), organization.get("name")) if isinstance(n, str)]
            for ident in [payor.get("identifier"), *as_list(organization.get("identifier"))]:
                if isinstance(ident, dict) and isinstance(ident.get("value"), str):
                    identifiers.add((str(ident.get("system", "")), ident["value"]))
        folded = {n.casefold() for n in names} if self.match_by_name else set()
        for entry in self.entries:
            if entry.identifiers & identifiers or entry.names & folded:
                plan, named = self._plan(entry, coverage)
                return CoveragePayer(names[0] if names else entry.label, entry.payer, plan,
                                     frozenset(identifiers), named)
        return CoveragePayer(names[0] if names else "the payer", identifiers=frozenset(identifiers))

    @staticmethod
    def _plan(entry: PayerEntry, coverage: dict[str, Any]) -> tuple[str | None, str | None]:
        """The covreq plan the Coverage's plan class maps to, and the plan it names (mapped or not)."""
        named = None
        for cls in as_list(coverage.get("class")):
            if not isinstance(cls, dict) or not any(
                    (c.get("system"), c["code"]) == (COVERAGE_CLASS, "plan")
                    for c in codings(cls.get("type"))):
                continue
            for key in (cls.get("value"), cls.get("name")):
                if isinstance(key, str) and key.casefold() in entry.plans:
                    return entry.plans[key.casefold()], key
                named = named or (key if isinstance(key, str) and key.strip() else None)
        return None, named
