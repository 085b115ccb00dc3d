"""Facts as form items: which facts a form can ask, how each is asked, and the way between a v1
request, a flat fact mapping and QuestionnaireResponse answers."""
from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from engine.language.facts import BOOL, DATE, FACTS, NUMBER, FactSpec
from engine.evaluation.request import TRIP_FACTS, trip_counts
from service.fhir.systems import ICD10CM, POS

GENDER = "http://hl7.org/fhir/administrative-gender"
#: Facts a single-line form cannot ask: the payer is the form's own, the code comes with the
#: order, the other lines are the order's (carried, read-only, not asked).
NOT_ASKED = frozenset({"payer", "code", "system", "other_codes", "request_codes"})
#: Facts the engine derives from another one: the form asks the one it is derived from.
DERIVED = {"patient.age": "patient.birth_date"}
#: The v1 request's ``order_complete``: not a fact, but it settles ``other_codes``, so forms carry it.
ORDER_COMPLETE = FactSpec("order_complete", BOOL, doc="The order's other codes are all listed (the order is complete)")
#: What a form item may hold: a fact, or the ``order_complete`` flag.
ITEM_SPECS = {**FACTS, ORDER_COMPLETE.name: ORDER_COMPLETE}
#: Facts of the service line in a v1 request; the others sit at its top level.
LINE_FACTS = ("code", "system", "modifiers", "units", "stage", "trial_place_of_service", "revenue_code",
              "round_trips_in_10_days", "round_trip_weeks")
#: Facts whose code system is known, for answers given as codings.
SYSTEMS = {"place_of_service": POS, "trial_place_of_service": POS, "diagnoses": ICD10CM, "patient.sex": GENDER}
#: The question each askable fact is asked with.
QUESTIONS = {
    "code": "Billing code (CPT or HCPCS)",
    "order_complete": ORDER_COMPLETE.doc,
    "system": "Code system of the billing code (CPT or HCPCS)",
    "other_codes": "Other billing codes of the order",
    "date_of_service": "Date of service",
    "plan": "Plan or product",
    "place_of_service": "Place of service (CMS two-digit code)",
    "trial_place_of_service": "Place of service of the trial (CMS two-digit code)",
    "type_of_bill": "Type of bill (e.g. 131)",
    "state": "State where the service is given (two letters)",
    "patient.birth_date": "Patient's date of birth",
    "patient.sex": "Patient's sex",
    "diagnoses": "Diagnoses (ICD-10-CM)",
    "provider.npi": "Rendering provider's NPI",
    "provider.specialty": "Rendering provider's specialty",
    "provider.network": "Is the rendering provider in or out of network?",
    "provider.type": "Kind of provider (va: Veterans Affairs; ihs: Indian Health Service or tribal)",
    "provider.exemptions": "Prior-authorization programs the provider is exempt from",
    "modifiers": "Modifiers of the billing code",
    "units": "Units",
    "stage": "Stage of the treatment (e.g. trial, permanent, initial, replacement)",
    "revenue_code": "Revenue code of the line on the institutional claim (four digits, e.g. 0450)",
    "round_trips_in_10_days": "Most round trips planned in any 10 consecutive days",
    "round_trip_weeks": "Most consecutive weeks planned with at least one round trip each",
}
#: Facts the form pre-populates from the EHR's data: each item's initialExpression reads the Library's
#: define of the fact (CQL, service/dtr/cql.py), from the Patient, the order and its Conditions.
PRE_POPULATED = ("patient.birth_date", "patient.sex", "state", "place_of_service", "diagnoses")


#: Facts whose answers are codes of a known form: the pattern and how it is told to the user.
CODE_FORMS = {
    "place_of_service": (re.compile(r"[0-9]{2}"), "a CMS two-digit place-of-service code"),
    "trial_place_of_service": (re.compile(r"[0-9]{2}"), "a CMS two-digit place-of-service code"),
    "state": (re.compile(r"[A-Za-z]{2}"), "a two-letter state code"),
    "patient.sex": (re.compile(r"female|male|other|unknown"), "an administrative gender code"),
}


@dataclass(frozen=True)
class Asked:
    """How a fact is asked: its item type and whether it repeats."""

    type: str
    repeats: bool


def asked_fact(name: str) -> str | None:
    """The fact a form asks to learn ``name``, or None when a form cannot ask it."""
    if name in NOT_ASKED:
        return None
    return DERIVED.get(name, name)


def item_type(spec: FactSpec, has_options: bool) -> Asked:
    """The Questionnaire item type a fact is answered with."""
    if spec.type == NUMBER:
        return Asked("decimal", spec.many)
    if spec.type == DATE:
        return Asked("date", spec.many)
    if spec.type == BOOL:
        return Asked("boolean", spec.many)
    return Asked("open-choice" if has_options else "string", spec.many)


def answer_values(spec: FactSpec, value: Any) -> list[dict[str, Any]]:
    """A fact's value as QuestionnaireResponse answers."""
    values = sorted(value) if isinstance(value, (list, tuple, set, frozenset)) else [value]
    answers = []
    for v in values:
        if spec.type == NUMBER:
            answers.append({"valueDecimal": v})
        elif spec.type == BOOL:
            answers.append({"valueBoolean": bool(v)})
        elif spec.type == DATE:
            answers.append({"valueDate": v if isinstance(v, str) else v.isoformat()})
        elif spec.name in SYSTEMS:
            answers.append({"valueCoding": {"system": SYSTEMS[spec.name], "code": str(v)}})
        else:
            answers.append({"valueString": str(v)})
    return answers


class AnswerError(ValueError):
    """An answer that cannot be a value of its fact; ``link_id`` names the item."""

    def __init__(self, link_id: str, message: str) -> None:
        super().__init__(message)
        self.link_id = link_id


def answer_value(spec: FactSpec, answer: Any) -> Any:
    """One QuestionnaireResponse answer as a v1 value of the fact; raises AnswerError."""
    if isinstance(answer, dict):
        for key, value in answer.items():
            if not key.startswith("value"):
                continue
            if key == "valueCoding" and isinstance(value, dict) and isinstance(value.get("code"), str):
                return _coded(spec, value["code"])
            if spec.type == NUMBER and key in ("valueDecimal", "valueInteger") and not isinstance(value, bool) \
                    and isinstance(value, (int, float)):
                return value
            if spec.type == DATE and key == "valueDate" and isinstance(value, str):
                return value
            if spec.type == BOOL and key == "valueBoolean" and isinstance(value, bool):
                return value
            if spec.type not in (NUMBER, DATE, BOOL) and key == "valueString" and isinstance(value, str):
                return _coded(spec, value)
    raise AnswerError(spec.name, f"the answer to '{spec.name}' must be {_expected(spec)}")


def _coded(spec: FactSpec, code: str) -> str:
    """``code`` when it has the form of its fact's codes (``CODE_FORMS``); raises AnswerError."""
    form = CODE_FORMS.get(spec.name)
    if form is not None and not form[0].fullmatch(code):
        raise AnswerError(spec.name, f"the answer to '{spec.name}' must be {form[1]}, not {code[:32]!r}")
    return code


def _expected(spec: FactSpec) -> str:
    if spec.type == NUMBER:
        return "a valueDecimal or valueInteger"
    if spec.type == DATE:
        return "a valueDate"
    if spec.type == BOOL:
        return "a valueBoolean"
    return "a valueCoding with a code or a valueString"


def flat_facts(body: Mapping[str, Any]) -> dict[str, Any]:
    """A single-line v1 request as flat fact names -> values, as given (not normalized)."""
    flat: dict[str, Any] = {}
    for key, value in body.items():
        if key in ("patient", "provider") and isinstance(value, dict):
            flat.update({f"{key}.{k}": v for k, v in value.items() if k != "id"})
        elif key == "services" and value:
            flat.update({k: v for k, v in value[0].items() if k not in ("id", "trip_dates")})
            flat.update({k: v for k, v in _trip_facts(value[0].get("trip_dates")).items() if k not in flat})
        elif key not in ("authorizations", "explain", "request_id"):
            flat[key] = value
    return {k: v for k, v in flat.items() if v not in (None, [], "")}


def _trip_facts(dates: Any) -> dict[str, int]:
    """A line's ``trip_dates`` as the facts the engine counts from them (forms ask the counts)."""
    try:
        days = [dt.date.fromisoformat(d) for d in dates] if isinstance(dates, list) and dates else []
    except (TypeError, ValueError):
        return {}
    return dict(zip(TRIP_FACTS, trip_counts(days))) if days else {}


def v1_body(flat: Mapping[str, Any]) -> dict[str, Any]:
    """The v1 request of flat facts (the inverse of :func:`flat_facts`): one line, then one per
    code of ``other_codes``."""
    body: dict[str, Any] = {}
    service: dict[str, Any] = {}
    others: list[dict[str, Any]] = []
    for name, value in flat.items():
        if name == "other_codes":
            others = [{"code": code} for code in value]
        elif name in LINE_FACTS:
            service[name] = value
        elif "." in name:
            group, key = name.split(".", 1)
            body.setdefault(group, {})[key] = value
        else:
            body[name] = value
    body["services"] = [service, *others]
    return body


def askable(names: Iterable[str]) -> list[str]:
    """The facts a form asks to learn ``names``, without repeats, in order."""
    return list(dict.fromkeys(a for a in map(asked_fact, names) if a is not None))

