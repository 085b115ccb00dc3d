"""CRD assertions -> the CDS Hooks response: coverage-information systemActions and cards."""
from __future__ import annotations

import uuid
from datetime import date
from typing import Any

from service.crd.coverage_information import Answered, assertion_ids, coverage_information, is_about
from service.fhir.values import as_list

CARD_TYPE = "http://terminology.hl7.org/CodeSystem/cdshooks-card-type"
SUMMARY_LIMIT = 139


def system_actions(answers: list[Answered], today: date, version: str) -> list[dict[str, Any]]:
    """One ``update`` per order whose coverage-information is new: the order as sent, with covreq's
    repetitions for the call's Coverage replaced and every other extension kept (resp-37, resp-46).
    An order that already carries this very answer gets no action (resp-29, resp-35)."""
    by_order: dict[str, list[Answered]] = {}
    for answer in answers:
        by_order.setdefault(answer.order.reference, []).append(answer)
    actions = []
    for reference, mine in by_order.items():
        resource, coverage = mine[0].order.resource, mine[0].coverage
        extensions = as_list(resource.get("extension"))
        previous = [e for e in extensions if is_about(e, coverage)]
        if len(previous) == len(mine) and set(assertion_ids(previous)) == {a.assertion_id for a in mine}:
            continue
        kept = [e for e in extensions if not is_about(e, coverage)]
        updated = {**resource, "extension": kept + [coverage_information(a, today, version) for a in mine]}
        actions.append({"type": "update", "description": f"Coverage information for {reference}",
                        "resource": updated})
    return actions


def cards(answers: list[Answered], max_cards: int) -> list[dict[str, Any]]:
    """One card per order and coverage for the codes needing prior authorization, then one for
    the codes whose answer is conditional; at most ``max_cards``."""
    groups: dict[tuple[bool, str, str], list[Answered]] = {}
    for answer in answers:
        a = answer.assertion
        if a.pa_needed == "auth-needed" or "conditional" in (a.covered, a.pa_needed):
            key = (a.pa_needed != "auth-needed", answer.order.reference, answer.coverage)
            groups.setdefault(key, []).append(answer)
    return [_card(groups[key], conditional=key[0]) for key in sorted(groups, key=lambda k: k[0])][:max_cards]


def _card(group: list[Answered], conditional: bool) -> dict[str, Any]:
    first = group[0]
    what = ", ".join(f"{a.assertion.line.system} {a.assertion.line.code}" if a.assertion.line
                     else first.order.reference for a in group)
    if conditional:
        needs = ", ".join(dict.fromkeys(f.replace("_", " ") for a in group
                                        for f in a.assertion.facts_needed)) or "more information"
        summary = f"{first.payer_label}: requirements for {what} depend on {needs}"
    else:
        summary = f"{first.payer_label}: prior authorization needed for {what}"
    detail: list[str] = []
    for a in group:
        label = f"{a.assertion.line.system} {a.assertion.line.code}" if a.assertion.line else "Order"
        detail += [f"**{label}**"] + [f"- {r}" for r in a.assertion.reasons]
        detail += [f"- Documentation: {d['text']} ({d['kind']})" for d in a.assertion.documentation]
    policies = {p["url"]: p for a in group for p in a.assertion.policies if p.get("url")}
    card: dict[str, Any] = {
        "uuid": str(uuid.uuid4()),
        "summary": summary if len(summary) <= SUMMARY_LIMIT else summary[:SUMMARY_LIMIT - 1] + "…",
        "indicator": "info",
        "detail": "\n".join(detail),
        "source": {"label": first.payer_label,
                   "topic": {"system": CARD_TYPE, "code": "coverage-info",
                             "display": "Coverage Information"}},
        "extension": {"davinci-crd.associated-resource": [{"reference": first.order.reference}]},
    }
    if policies:
        card["links"] = [{"label": f"{p['title']} (version {p['version']})" if p.get("version")
                          else p["title"], "url": url, "type": "absolute"} for url, p in policies.items()]
    return card
