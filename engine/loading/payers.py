"""Reading a payer file (``_payer.yaml``): its plans, scope and default answer."""
from __future__ import annotations

from engine.loading.schema import check_schema
from engine.loading.source import Problems, Source
from engine.policy import COMPLETE, COVERED, NO_AUTH, PROGRAMS, Outcome, PayerInfo


def read_payer(source: Source, problems: Problems) -> PayerInfo | None:
    if check_schema(source, "payer.schema.json", problems):
        return None
    data = source.data
    default = data.get("default")
    scope = data.get("scope", PROGRAMS)
    plans = {plan: entry if isinstance(entry, str) else entry.get("title", plan)
             for plan, entry in data.get("plans", {}).items()}
    plan_scopes = {plan: entry["scope"] for plan, entry in data.get("plans", {}).items()
                   if isinstance(entry, dict) and "scope" in entry}
    claimed = [key for key in ("pa_needed", "covered") if key in (default or {})]
    if claimed and COMPLETE not in (scope, *plan_scopes.values()):
        for key in claimed:
            problems.add(source.at("default", key), "E-scope",
                         f"default.{key} answers every code no policy lists, which is true only when these "
                         "rules are the payer's whole prior-authorization list: add `scope: complete` if "
                         f"they are, else remove default.{key} (codes no policy lists are then answered "
                         "'unknown', with default.reason)")
        return None
    return PayerInfo(data["payer"], data.get("title", ""),
                     Outcome(default.get("pa_needed", NO_AUTH), default.get("covered", COVERED), (),
                             default.get("reason", "")) if default else None,
                     plans, scope, plan_scopes, "plans" in data)
