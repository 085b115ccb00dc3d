"""The catalogue of facts a condition may read, with their types."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

# Scalar types.
BOOL, NUMBER, STRING, DATE, CODE, ICD = "bool", "number", "string", "date", "code", "icd"


class OpenSet(frozenset):  # type: ignore[type-arg]
    """A multi-valued fact known only in part: it holds its members and maybe others.

    ``other_codes`` is open unless the request says its order is complete: a code on another line
    is known to be on the order, a code on no line may still be on a part of the order not sent."""

    __slots__ = ()


def unsettled(value: object) -> bool:
    """True for a fact the request does not carry (``None``) or carries only in part (open set)."""
    return value is None or type(value) is OpenSet


def fact_of(facts: Mapping[str, Any], name: str) -> Any:
    """The value of fact ``name`` in a line's ``facts``, None when they do not carry it. The facts a
    line derives only when read (:data:`DERIVED`, see :class:`engine.evaluation.request.LineFacts`) are read
    with ``[]``, which derives them; ``get`` would not."""
    if name in DERIVED:
        try:
            return facts[name]
        except KeyError:
            return None
    return facts.get(name)


@dataclass(frozen=True)
class FactSpec:
    """One fact: its type and, for multi-valued facts, ``many=True`` (a set of ``type``). ``title``
    names it for people reading a condition in plain English (engine/language/plain.py): a noun phrase with its
    article ("the patient's age"; plural for a multi-valued fact), and ``member`` one of its values
    ("diagnosis")."""

    name: str
    type: str
    many: bool = False
    doc: str = ""
    title: str = ""
    member: str = ""

    @property
    def type_name(self) -> str:
        """Human name of the type, as used in error messages."""
        return f"set of {self.type}" if self.many else self.type


FACTS: dict[str, FactSpec] = {spec.name: spec for spec in (
    FactSpec("payer", STRING, doc="payer id", title="the payer"),
    FactSpec("plan", STRING, doc="plan or product id", title="the plan"),
    FactSpec("date_of_service", DATE, doc="the date of service; today when absent", title="the date of service"),
    FactSpec("place_of_service", STRING, doc="CMS two-digit place-of-service code", title="the place of service"),
    FactSpec("type_of_bill", STRING, doc="type of bill, e.g. 131 or 13X", title="the type of bill"),
    FactSpec("state", STRING, doc="two-letter state", title="the state"),
    FactSpec("patient.age", NUMBER, doc="whole years at the date of service", title="the patient's age"),
    FactSpec("patient.birth_date", DATE, title="the patient's date of birth"),
    FactSpec("patient.sex", STRING, title="the patient's sex"),
    FactSpec("diagnoses", ICD, many=True, doc="ICD-10-CM diagnosis codes", title="the diagnoses", member="diagnosis"),
    FactSpec("provider.npi", STRING, title="the provider's NPI"),
    FactSpec("provider.specialty", STRING, title="the provider's specialty"),
    FactSpec("provider.network", STRING, doc="in or out", title="the provider's network status"),
    FactSpec("provider.type", STRING, doc="the kind of provider where a program depends on it, lower case: "
                                          "va (Veterans Affairs), ihs (Indian Health Service or tribal)",
             title="the kind of provider"),
    FactSpec("provider.exemptions", STRING, many=True, doc="programs the provider is exempt from",
             title="the provider's exemptions", member="exemption of the provider"),
    FactSpec("code", CODE, doc="the service line's CPT or HCPCS code", title="the billing code"),
    FactSpec("system", STRING, doc="CPT or HCPCS", title="the code system"),
    FactSpec("modifiers", STRING, many=True, title="the modifiers", member="modifier"),
    FactSpec("units", NUMBER, title="the number of units"),
    FactSpec("stage", STRING, doc="trial, permanent, initial, replacement ...", title="the stage"),
    FactSpec("trial_place_of_service", STRING, doc="for a permanent implant: the place of service of its trial",
             title="the trial's place of service"),
    FactSpec("revenue_code", STRING, doc="the line's revenue code on an institutional claim, four digits (0450)",
             title="the revenue code"),
    FactSpec("round_trips_in_10_days", NUMBER, doc="transport: the most round trips the schedule plans in any "
                                                   "10 consecutive days",
             title="the most round trips in any 10 consecutive days"),
    FactSpec("round_trip_weeks", NUMBER, doc="transport: the most consecutive weeks of the schedule with at "
                                             "least one round trip each",
             title="the most consecutive weeks with a round trip each"),
    FactSpec("other_codes", CODE, many=True, doc="codes of the other lines of the order: known in part (an "
                                                 "open set) unless the request says the order is complete",
             title="the order's other codes", member="code elsewhere on the order"),
    FactSpec("request_codes", CODE, many=True, doc="codes of the other lines of this request, a code not sent "
                                                   "being absent",
             title="the request's other codes", member="code on another line of the request"),
)}

#: Facts every request carries on every line (required, defaulted or inferred by engine/evaluation/request.py):
#: never unknown, so ``known(x)`` of these is always true.
ALWAYS = frozenset({"payer", "date_of_service", "code", "system", "modifiers", "units", "other_codes",
                    "request_codes", "provider.exemptions"})
#: Facts a line of several derives on their first read with ``facts[name]`` (see :func:`fact_of`).
DERIVED = frozenset({"other_codes", "request_codes"})
#: Multi-valued facts a request may carry only in part (as an :class:`OpenSet`).
OPEN = frozenset({"other_codes"})
