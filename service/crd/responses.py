"""CRD assertions -> the CDS Hooks response: coverage-information systemActions and cards."""
from __future__ import annotations

import uuid
from datetime import date
from typing import Any

from service.crd.assertions import Assertion
from service.crd.coverage_information import Answered, assertion_ids, coverage_information, is_about
from service.crd.requests import Order
from service.fhir.values import as_list

CARD_TYPE = "http://terminology.hl7.org/CodeSystem/cdshooks-card-type"
SUMMARY_LIMIT = 139
PROBLEMS_SHOWN = 10  # R4 problems of an invalid order named on its card


def system_actions(answers: list[Answered], today: date, version: str) -> list[dict[str, Any]]:
    """One ``update`` per order whose coverage-information is new: the order as sent, with covreq's
    repetitions for the call's Coverage replaced and every other extension kept (resp-37, resp-46).
    An order that already carries this very answer gets no action (resp-29, resp-35)."""
    by_order: dict[str, list[Answered]] = {}
    for answer in answers:
        by_order.setdefault(answer.order.reference, []).append(answer)
    actions = []
    for reference, mine in by_order.items():
        if mine[0].order.problems:
            continue  # not valid R4: an update of it would not be either (its card says why)
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


def cards(answers: list[Answered], max_cards: int, today: date) -> list[dict[str, Any]]:
    """One card per order whose answer needs someone to act (request prior authorization, supply
    what the answer depends on, or ask the payer what covreq cannot tell): instructions, not a restatement of the systemAction (CRD resp-12,
    resp-25). Prior-authorization cards first; at most ``max_cards``. An order that already carries
    this answer gets its card again: a CDS client replaces the cards it shows with each response's.
    An order that is not valid R4 gets a card saying what is wrong with it."""
    by_order: dict[str, list[Answered]] = {}
    for answer in answers:
        if _needs_action(answer.assertion) or answer.order.problems:
            by_order.setdefault(answer.order.reference, []).append(answer)
    groups = sorted(by_order.values(), key=lambda g: not any(a.assertion.pa_needed == "auth-needed" for a in g))
    return [_card(group, today) for group in groups[:max_cards]]


def _needs_action(a: Assertion) -> bool:
    """Whether someone must act on an answer: request PA, supply what it depends on, or ask the
    payer (``indeterminate``: covreq holds no rule for the code, or could not read or reach what
    decides it)."""
    return a.pa_needed in ("auth-needed", "indeterminate") or "conditional" in (a.covered, a.pa_needed)


def _card(group: list[Answered], today: date) -> dict[str, Any]:
    first = group[0]
    order, payer = first.order, first.payer_label
    if order.problems:
        return _invalid_card(order, payer)
    authorize = [a.assertion for a in group if a.assertion.pa_needed == "auth-needed"]
    unknown = [a.assertion for a in group if a.assertion.pa_needed == "indeterminate"]
    depend = [a.assertion for a in group if a.assertion.pa_needed not in ("auth-needed", "indeterminate")]
    needs = list(dict.fromkeys(f.replace("_", " ") for a in depend for f in a.facts_needed)) or ["more information"]
    if authorize:
        summary = f"{payer}: prior authorization needed for {order.display}"
    elif depend:
        summary = f"{payer}: {', '.join(needs)} needed to decide on {order.display}"
    else:
        summary = f"{payer}: ask {payer} whether {order.display} needs prior authorization"
    when = order.facts.get("date_of_service")
    paragraphs = [f"**Date of service:** {when} (from the order)" if when
                  else f"**Date of service assumed:** {today.isoformat()} (the order gives none)"]
    if authorize:
        paragraphs.append(f"**Request prior authorization** for {_codes(authorize)}.")
    if depend:
        paragraphs.append(f"**Not yet decided** for {_codes(depend)}: it depends on {', '.join(needs)}.")
    if unknown:
        paragraphs.append(f"**Not known to covreq** for {_codes(unknown)}: check with {payer} before scheduling.")
    documents = _documents(authorize)
    if documents:
        items = [f"- {text} ({kind})" + (f", needed {when}" if when else "") for (text, kind), when in documents.items()]
        paragraphs.append("\n".join(["**Documentation to prepare:**", *items]))
    reasons = dict.fromkeys(r for a in [*authorize, *depend, *unknown] for r in a.reasons)
    paragraphs.append("\n".join(["**Why:**", *(f"- {reason}" for reason in reasons)]))
    policies = {p["url"]: p for a in group for p in a.assertion.policies if p.get("url")}
    card = _card_of(order, payer, summary, "\n\n".join(paragraphs))
    if policies:
        card["links"] = [{"label": f"{p['title']} (version {p['version']})" if p.get("version")
                          else p["title"], "url": url, "type": "absolute"} for url, p in policies.items()]
    return card


def _documents(assertions: list[Assertion]) -> dict[tuple[str, str], str | None]:
    """Each documentation item of ``assertions`` once, by text and kind, with when it is needed in
    plain English (the first condition met), or None when some assertion owes it in every case."""
    owed: dict[tuple[str, str], str | None] = {}
    for doc in (doc for a in assertions for doc in a.documentation):
        key, when = (doc["text"], doc["kind"]), doc.get("required_when")
        owed[key] = None if when is None or (key in owed and owed[key] is None) else owed.get(key, when)
    return owed


def _invalid_card(order: Order, payer: str) -> dict[str, Any]:
    """The card of an order that is not valid R4: what is wrong, where (the first PROBLEMS_SHOWN)."""
    more = len(order.problems) - PROBLEMS_SHOWN
    return _card_of(order, payer, f"{payer}: {order.display} could not be checked (not valid FHIR R4)",
                    "\n".join(["**Not checked:** the order is not valid FHIR R4, so its coverage "
                               "requirements are indeterminate until it is corrected.",
                               *(f"- `{p.path}`: {p.message}" for p in order.problems[:PROBLEMS_SHOWN]),
                               *([f"- and {more} more"] if more > 0 else [])]))


def _card_of(order: Order, payer: str, summary: str, detail: str) -> dict[str, Any]:
    """A coverage-info card about ``order``, from ``payer``."""
    return {
        "uuid": str(uuid.uuid4()),
        "summary": shorten(summary, SUMMARY_LIMIT),
        "indicator": "info",
        "detail": detail,
        "source": {"label": payer, "topic": {"system": CARD_TYPE, "code": "coverage-info",
                                             "display": "Coverage Information"}},
        "extension": {"davinci-crd.associated-resource": [{"reference": order.reference}]},
    }


def _codes(assertions: list[Assertion]) -> str:
    """``CPT 77061, CPT 77062`` (or "the order" when it carries no billing code)."""
    return ", ".join(f"{a.line.system} {a.line.code}" if a.line else "the order" for a in assertions)


def shorten(text: str, limit: int) -> str:
    """``text`` cut at a word boundary to at most ``limit`` characters, marked with an ellipsis."""
    if len(text) <= limit:
        return text
    cut = text[:limit - 1]
    return (cut.rsplit(" ", 1)[0] if " " in cut else cut).rstrip(" ,;:-") + "…"
