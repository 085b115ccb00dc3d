"""The v1 request: validate it and turn it into facts for evaluation."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Mapping

from .codes import CPT, HCPCS, normalize, system_of
from .errors import RequestError

#: Most service lines one request may carry.
MAX_LINES = 1000
#: Dates of service outside these years are refused as implausible.
MIN_YEAR, MAX_YEAR = 1900, 2200
#: Longest string accepted in any field (codes, ids, names); longer ones are refused, not echoed.
MAX_TEXT = 256
#: Most entries in any other list (diagnoses, modifiers, exemptions, authorizations).
MAX_ITEMS = 1000
_SCALAR_FACTS = ("plan", "place_of_service", "type_of_bill", "state")
_TOP_KEYS = {"payer", "plan", "date_of_service", "place_of_service", "type_of_bill", "state", "patient",
             "diagnoses", "provider", "authorizations", "services", "explain", "request_id"}
_SERVICE_KEYS = {"code", "system", "modifiers", "units", "stage", "id"}


@dataclass(frozen=True)
class Authorization:
    """An authorization on file: it covers ``code`` from ``start`` to ``end`` (inclusive) when given."""

    id: str
    code: str | None
    start: dt.date
    end: dt.date | None


@dataclass(frozen=True)
class Line:
    """One service line and the facts conditions read for it."""

    code: str
    system: str
    facts: Mapping[str, Any]


@dataclass(frozen=True)
class Request:
    """A validated v1 request."""

    payer: str
    plan: str | None
    as_of: dt.date
    lines: tuple[Line, ...]
    authorizations: tuple[Authorization, ...]
    explain: bool


def _short(value: str, where: str) -> str:
    if len(value) > MAX_TEXT:
        raise RequestError(where, f"is {len(value)} characters long; the limit is {MAX_TEXT}")
    return value


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise RequestError(where, "must be a non-empty string")
    return _short(value, where).strip()


def _date(value: Any, where: str) -> dt.date:
    if not isinstance(value, str):
        raise RequestError(where, "must be a date written YYYY-MM-DD")
    _short(value, where)
    try:
        day = dt.date.fromisoformat(value)
    except ValueError:
        raise RequestError(where, f"'{value}' is not a date written YYYY-MM-DD") from None
    if not MIN_YEAR <= day.year <= MAX_YEAR:
        raise RequestError(where, f"{value} is outside the years {MIN_YEAR}-{MAX_YEAR}")
    return day


def _items(value: list[Any], where: str) -> list[Any]:
    if len(value) > MAX_ITEMS:
        raise RequestError(where, f"has {len(value)} entries; the limit is {MAX_ITEMS}")
    return value


def _strings(value: Any, where: str) -> frozenset[str]:
    if not isinstance(value, list):
        raise RequestError(where, "must be a list of strings")
    _items(value, where)
    return frozenset(_text(v, f"{where}[{i}]") for i, v in enumerate(value))


def _object(value: Any, where: str, keys: set[str] | None = None) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise RequestError(where, "must be an object")
    if keys is not None:
        unknown = sorted(str(k) for k in set(value) - keys)
        if unknown:
            name = _short(unknown[0], where or "(top level)")
            raise RequestError(f"{where}.{name}" if where else name,
                               f"unknown field; expected one of {', '.join(sorted(keys))}")
    return value


def age_on(birth: dt.date, day: dt.date) -> int:
    """Whole years from ``birth`` to ``day``."""
    return day.year - birth.year - ((day.month, day.day) < (birth.month, birth.day))


def _common_facts(body: Mapping[str, Any], as_of: dt.date) -> dict[str, Any]:
    facts: dict[str, Any] = {"payer": body["payer"], "date_of_service": as_of}
    for name in _SCALAR_FACTS:
        if body.get(name) is not None:
            facts[name] = _text(body[name], name)
    if "type_of_bill" in facts:
        facts["type_of_bill"] = facts["type_of_bill"].upper().lstrip("0")
    if "state" in facts:
        facts["state"] = facts["state"].upper()
    patient = _object(body.get("patient") or {}, "patient", {"birth_date", "sex", "id"})
    if patient.get("birth_date") is not None:
        birth = _date(patient["birth_date"], "patient.birth_date")
        if birth > as_of:
            raise RequestError("patient.birth_date", f"{birth} is after the date of service {as_of}")
        facts["patient.birth_date"] = birth
        facts["patient.age"] = age_on(birth, as_of)
    if patient.get("sex") is not None:
        facts["patient.sex"] = _text(patient["sex"], "patient.sex").lower()
    if body.get("diagnoses") is not None:
        facts["diagnoses"] = frozenset(normalize(d) for d in _strings(body["diagnoses"], "diagnoses"))
    provider = _object(body.get("provider") or {}, "provider", {"npi", "specialty", "network", "state", "exemptions"})
    for key in ("npi", "specialty", "network"):
        if provider.get(key) is not None:
            facts[f"provider.{key}"] = _text(provider[key], f"provider.{key}")
    facts["provider.exemptions"] = _strings(provider.get("exemptions") or [], "provider.exemptions")
    return facts


def _authorizations(value: Any) -> tuple[Authorization, ...]:
    if not isinstance(value, list):
        raise RequestError("authorizations", "must be a list")
    _items(value, "authorizations")
    result = []
    for i, item in enumerate(value):
        where = f"authorizations[{i}]"
        item = _object(item, where, {"id", "code", "start", "end"})
        if "start" not in item:
            raise RequestError(f"{where}.start", "is required (the decision date)")
        result.append(Authorization(
            _text(item.get("id"), f"{where}.id"),
            normalize(_text(item["code"], f"{where}.code")) if item.get("code") is not None else None,
            _date(item["start"], f"{where}.start"),
            _date(item["end"], f"{where}.end") if item.get("end") is not None else None))
    return tuple(result)


def _service(item: Any, index: int) -> tuple[str, str, dict[str, Any]]:
    where = f"services[{index}]"
    item = _object(item, where, _SERVICE_KEYS)
    if "code" not in item:
        raise RequestError(f"{where}.code", "is required")
    raw = item["code"]
    if isinstance(raw, str):
        _short(raw, f"{where}.code")
    code = normalize(str(raw)) if isinstance(raw, (str, int)) and not isinstance(raw, bool) else ""
    inferred = system_of(code)
    if inferred not in (CPT, HCPCS):
        raise RequestError(f"{where}.code", f"{raw!r} is not a CPT or HCPCS Level II code")
    system = inferred
    if item.get("system") is not None:
        system = _text(item["system"], f"{where}.system").upper()
        if system not in (CPT, HCPCS):
            raise RequestError(f"{where}.system", f"'{item['system']}' is not CPT or HCPCS")
        if system != inferred:
            raise RequestError(f"{where}.code", f"'{code}' is not a {system} code")
    facts: dict[str, Any] = {"code": code, "system": system,
                             "modifiers": frozenset(m.upper() for m in _strings(item.get("modifiers") or [],
                                                                                 f"{where}.modifiers"))}
    units = item.get("units", 1)
    if isinstance(units, bool) or not isinstance(units, (int, float)) or units < 0 or units > 1_000_000:
        raise RequestError(f"{where}.units", "must be a number from 0 to 1000000")
    facts["units"] = float(units)
    if item.get("stage") is not None:
        facts["stage"] = _text(item["stage"], f"{where}.stage").lower()
    return code, system, facts


def parse_request(body: Any, today: dt.date | None = None) -> Request:
    """Validate a v1 request body (a parsed JSON object) and derive every line's facts."""
    body = _object(body, "", _TOP_KEYS)
    payer = _text(body.get("payer"), "payer")
    services = body.get("services")
    if not isinstance(services, list) or not services:
        raise RequestError("services", "must be a non-empty list of service lines")
    if len(services) > MAX_LINES:
        raise RequestError("services", f"has {len(services)} lines; the limit is {MAX_LINES}")
    explain = body.get("explain", False)
    if not isinstance(explain, bool):
        raise RequestError("explain", "must be true or false")
    as_of = _date(body["date_of_service"], "date_of_service") if body.get("date_of_service") is not None \
        else (today or dt.date.today())
    common = _common_facts(body, as_of)
    parsed = [_service(item, i) for i, item in enumerate(services)]
    lines = []
    for i, (code, system, facts) in enumerate(parsed):
        others = frozenset(c for j, (c, _, _) in enumerate(parsed) if j != i)
        lines.append(Line(code, system, {**common, **facts, "other_codes": others}))
    auths = _authorizations(body["authorizations"]) if body.get("authorizations") is not None else ()
    return Request(payer, common.get("plan"), as_of, tuple(lines), auths, explain)
