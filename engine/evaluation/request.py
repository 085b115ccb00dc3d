"""The v1 request: validate it and turn it into facts for evaluation."""
from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any, Mapping

import msgspec

from engine.evaluation import contract
from engine.evaluation import fields
from engine.evaluation.clock import current_day
from engine.evaluation.fields import MAX_YEAR, MIN_YEAR, age_on
from engine.language.codes import CPT, HCPCS, normalize, system_of
from engine.errors import RequestError, bad_date, did_you_mean
from engine.language.facts import DERIVED, OpenSet

#: Most service lines one request may carry.
MAX_LINES = contract.MAX_LINES
#: Longest string accepted in any field (codes, ids, names); longer ones are refused, not echoed.
MAX_TEXT = contract.MAX_TEXT
#: Most entries in any other list (diagnoses, modifiers, exemptions, authorizations).
MAX_ITEMS = contract.MAX_ITEMS
_SCALAR_FACTS = ("plan", "place_of_service", "type_of_bill", "state")
_TOP_KEYS = frozenset({"payer", "plan", "date_of_service", "place_of_service", "type_of_bill", "state", "patient",
                       "diagnoses", "provider", "authorizations", "services", "order_complete", "explain",
                        "request_id"})
_SERVICE_KEYS = frozenset({"code", "system", "modifiers", "units", "stage", "trial_place_of_service", "revenue_code",
                           "trip_dates", "round_trips_in_10_days", "round_trip_weeks", "id"})
#: The line's transport schedule as numbers: given, or counted from ``trip_dates``.
TRIP_FACTS = ("round_trips_in_10_days", "round_trip_weeks")
_REVENUE_CODE = re.compile(r"[0-9]{3,4}")
_PATIENT_KEYS = frozenset({"birth_date", "sex", "id"})
_PROVIDER_KEYS = frozenset({"npi", "specialty", "network", "type", "state", "exemptions"})
_AUTH_KEYS = frozenset({"id", "code", "start", "end"})
_EMPTY: frozenset[str] = frozenset()
#: The (request_codes, other_codes) of a one-line request, as the order is complete or not.
_ALONE = {True: (_EMPTY, _EMPTY), False: (_EMPTY, OpenSet())}


@dataclass(frozen=True)
class Authorization:
    """An authorization on file: it covers ``code`` from ``start`` to ``end`` (inclusive) when given."""

    id: str
    code: str | None
    start: dt.date
    end: dt.date | None


class Line(msgspec.Struct, frozen=True, gc=False):
    """One service line and the facts conditions read for it (a C struct: built once per line)."""

    code: str
    system: str
    facts: Mapping[str, Any]


class Request(msgspec.Struct, frozen=True):
    """A validated v1 request."""

    payer: str
    plan: str | None
    as_of: dt.date
    lines: tuple[Line, ...]
    authorizations: tuple[Authorization, ...]
    explain: bool


Where = tuple[object, ...]  # a field's path, e.g. ("services", 0, "code"); named only on error


def _name(where: Where) -> str:
    """``("services", 0, "code")`` -> ``services[0].code``."""
    text = ""
    for part in where:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _fail(where: Where, message: str) -> RequestError:
    return RequestError(_name(where), message)


def _too_long(value: str, where: Where) -> RequestError:
    return _fail(where, f"is {len(value)} characters long; the limit is {MAX_TEXT}")


def _text(value: Any, where: Where) -> str:
    if type(value) is str and len(value) <= MAX_TEXT:
        stripped = value.strip()
        if stripped:
            return stripped
    if isinstance(value, str) and len(value) > MAX_TEXT:
        raise _too_long(value, where)
    raise _fail(where, "must be a non-empty string")


def _date(value: Any, where: Where) -> dt.date:
    if not isinstance(value, str):
        raise _fail(where, "must be a date written YYYY-MM-DD")
    if len(value) > MAX_TEXT:
        raise _too_long(value, where)
    try:
        if not fields.ISO_DATE.fullmatch(value):  # fromisoformat also takes 20240314 and 2024-W11-4
            raise ValueError
        day = dt.date.fromisoformat(value)
    except ValueError:
        raise _fail(where, bad_date(value)) from None
    if not MIN_YEAR <= day.year <= MAX_YEAR:
        raise _fail(where, f"{value} is outside the years {MIN_YEAR}-{MAX_YEAR}")
    return day


def _list(value: Any, where: Where, what: str = "a list") -> list[Any]:
    if type(value) is not list:
        raise _fail(where, f"must be {what}")
    if len(value) > MAX_ITEMS:
        raise _fail(where, f"has {len(value)} entries; the limit is {MAX_ITEMS}")
    return value


def _strings(value: Any, where: Where) -> frozenset[str]:
    return frozenset(_text(v, (*where, i)) for i, v in enumerate(_list(value, where, "a list of strings")))


def _object(value: Any, where: Where, keys: frozenset[str]) -> Mapping[str, Any]:
    if type(value) is not dict:
        raise _fail(where, "must be an object")
    if not keys.issuperset(value):
        unknown = sorted(str(k) for k in value if k not in keys)[0]
        if len(unknown) > MAX_TEXT:
            raise _too_long(unknown, where or ("(top level)",))
        raise _fail((*where, unknown),
                    "unknown field" + (did_you_mean(unknown, keys) or f"; expected one of {', '.join(sorted(keys))}"))
    return value


def trip_counts(dates: list[dt.date]) -> tuple[int, int]:
    """(the most round trips in any 10 consecutive days, the most consecutive weeks with at least one
    round trip) of a schedule of round-trip dates; weeks are calendar weeks, Sunday to Saturday."""
    days = sorted(dates)
    most, first = 0, 0
    for last, day in enumerate(days):  # a window of at most 10 days ending at each trip
        while (day - days[first]).days >= 10:
            first += 1
        most = max(most, last - first + 1)
    weeks = sorted({d.toordinal() // 7 for d in days})  # ordinal 7 is a Sunday
    run = longest = 1
    for before, week in zip(weeks, weeks[1:]):
        run = run + 1 if week == before + 1 else 1
        longest = max(longest, run)
    return most, longest


def _revenue_code(text: str) -> str | None:
    """A revenue code as facts hold it, four digits ("450" -> "0450"); None when it is not one."""
    text = text.strip()
    return text.zfill(4) if _REVENUE_CODE.fullmatch(text) else None


def _trips(facts: dict[str, Any], dates: list[dt.date], given: Mapping[str, Any]) -> None:
    """Put a line's trip counts into ``facts``: those ``given``, else counted from ``dates``."""
    counted = trip_counts(dates) if dates else None
    for index, name in enumerate(TRIP_FACTS):
        if given.get(name) is not None:
            facts[name] = float(given[name])
        elif counted is not None:
            facts[name] = float(counted[index])


def _common_facts(body: Mapping[str, Any], as_of: dt.date) -> dict[str, Any]:
    facts: dict[str, Any] = {"payer": body["payer"], "date_of_service": as_of}
    for name in _SCALAR_FACTS:
        if body.get(name) is not None:
            facts[name] = _text(body[name], (name,))
    if "type_of_bill" in facts:
        facts["type_of_bill"] = facts["type_of_bill"].upper().lstrip("0")
    if "state" in facts:
        facts["state"] = facts["state"].upper()
    patient = _object(body.get("patient") or {}, ("patient",), _PATIENT_KEYS)
    if patient.get("birth_date") is not None:
        birth = _date(patient["birth_date"], ("patient", "birth_date"))
        if birth > as_of:
            raise RequestError("patient.birth_date", f"{birth} is after the date of service {as_of}")
        facts["patient.birth_date"] = birth
        facts["patient.age"] = age_on(birth, as_of)
    if patient.get("sex") is not None:
        facts["patient.sex"] = _text(patient["sex"], ("patient", "sex")).lower()
    if body.get("diagnoses") is not None:
        facts["diagnoses"] = frozenset(normalize(d) for d in _strings(body["diagnoses"], ("diagnoses",)))
    provider = _object(body.get("provider") or {}, ("provider",), _PROVIDER_KEYS)
    for key in ("npi", "specialty", "network"):
        if provider.get(key) is not None:
            facts[f"provider.{key}"] = _text(provider[key], ("provider", key))
    if provider.get("type") is not None:
        facts["provider.type"] = _text(provider["type"], ("provider", "type")).lower()
    exemptions = provider.get("exemptions")
    facts["provider.exemptions"] = _strings(exemptions, ("provider", "exemptions")) if exemptions else _EMPTY
    return facts


def _authorizations(value: Any) -> tuple[Authorization, ...]:
    result = []
    for i, item in enumerate(_list(value, ("authorizations",))):
        where = ("authorizations", i)
        item = _object(item, where, _AUTH_KEYS)
        if "start" not in item:
            raise _fail((*where, "start"), "is required (the decision date)")
        result.append(Authorization(
            _text(item.get("id"), (*where, "id")),
            normalize(_text(item["code"], (*where, "code"))) if item.get("code") is not None else None,
            _date(item["start"], (*where, "start")),
            _date(item["end"], (*where, "end")) if item.get("end") is not None else None))
    return tuple(result)


def _service(item: Any, index: int) -> tuple[str, str, dict[str, Any]]:
    where = ("services", index)
    item = _object(item, where, _SERVICE_KEYS)
    if "code" not in item:
        raise _fail((*where, "code"), "is required")
    raw = item["code"]
    if isinstance(raw, str) and len(raw) > MAX_TEXT:
        raise _too_long(raw, (*where, "code"))
    code = normalize(str(raw)) if isinstance(raw, (str, int)) and not isinstance(raw, bool) else ""
    inferred = system_of(code)
    if inferred not in (CPT, HCPCS):
        raise _fail((*where, "code"), f"{raw!r} is not a CPT or HCPCS Level II code")
    system = inferred
    if item.get("system") is not None:
        system = _text(item["system"], (*where, "system")).upper()
        if system not in (CPT, HCPCS):
            raise _fail((*where, "system"), f"'{item['system']}' is not CPT or HCPCS")
        if system != inferred:
            raise _fail((*where, "code"), f"'{code}' is not a {system} code")
    modifiers = item.get("modifiers")
    facts: dict[str, Any] = {"code": code, "system": system, "modifiers": frozenset(
        m.upper() for m in _strings(modifiers, (*where, "modifiers"))) if modifiers else _EMPTY}
    units = item.get("units", 1)
    if isinstance(units, bool) or not isinstance(units, (int, float)) or not 0 <= units <= 1_000_000:
        raise _fail((*where, "units"), "must be a number from 0 to 1000000")
    facts["units"] = float(units)
    if item.get("stage") is not None:
        facts["stage"] = _text(item["stage"], (*where, "stage")).lower()
    if item.get("trial_place_of_service") is not None:
        facts["trial_place_of_service"] = _text(item["trial_place_of_service"], (*where, "trial_place_of_service"))
    if item.get("revenue_code") is not None:
        revenue = _revenue_code(_text(item["revenue_code"], (*where, "revenue_code")))
        if revenue is None:
            raise _fail((*where, "revenue_code"), f"{item['revenue_code']!r} is not a revenue code (four digits, e.g. 0450)")
        facts["revenue_code"] = revenue
    for name in TRIP_FACTS:
        value = item.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or not 0 <= value <= 1_000_000):
            raise _fail((*where, name), "must be a number from 0 to 1000000")
    dates = item.get("trip_dates")
    _trips(facts, [_date(d, (*where, "trip_dates", i)) for i, d in enumerate(_list(dates, (*where, "trip_dates")))]
           if dates is not None else [], item)
    return code, system, facts


class _Order:
    """The codes of a request's lines, from which each line derives its ``request_codes`` (the
    codes of the other lines; a code repeated on two lines sees itself) and ``other_codes`` (the
    same as an :class:`OpenSet` unless the order is complete: a split order may carry more codes
    than this request). Lines of one code share them."""

    __slots__ = ("_codes", "_complete", "_every", "_repeated", "_views")

    def __init__(self, complete: bool) -> None:
        self._codes: list[str] = []
        self._complete = complete
        self._every: frozenset[str] | None = None
        self._repeated: frozenset[str] = _EMPTY
        self._views: dict[str, tuple[frozenset[str], frozenset[str]]] = {}

    def line(self, common: Mapping[str, Any], code: str) -> LineFacts:
        """The facts of the order's next line, of ``code``: for now a copy of the ``common`` facts."""
        self._codes.append(code)
        line = LineFacts(common)
        line.order = self
        return line

    def views(self, code: str) -> tuple[frozenset[str], frozenset[str]]:
        """(``request_codes``, ``other_codes``) of a line of ``code``, once every line is read."""
        found = self._views.get(code)
        if found is None:
            if self._every is None:
                counts = Counter(self._codes)
                self._every = frozenset(counts)
                self._repeated = frozenset(code for code, count in counts.items() if count > 1)
            others = self._every if code in self._repeated else self._every - {code}
            found = self._views[code] = (others, others if self._complete else OpenSet(others))
        return found


class LineFacts(dict):  # type: ignore[type-arg]
    """The facts of one service line of a request of several lines. ``request_codes`` and
    ``other_codes`` are derived on first read with ``facts[name]`` (as :func:`engine.language.facts.fact_of`
    reads every fact a line always carries): building them for every line would cost the square of
    the order's length, and most policies never read them."""

    __slots__ = ("order",)

    def __missing__(self, name: str) -> frozenset[str]:
        if name not in DERIVED:
            raise KeyError(name)
        self["request_codes"], self["other_codes"] = self.order.views(self["code"])
        return self[name]  # type: ignore[no-any-return]


def _order_of(common: dict[str, Any], lines: int, complete: bool) -> _Order | None:
    """The order whose lines derive their other codes, or, for a request of one line, None after
    putting its (empty) ``request_codes`` and ``other_codes`` into ``common``."""
    if lines > 1:
        return _Order(complete)
    common["request_codes"], common["other_codes"] = _ALONE[complete]
    return None


def _flag(body: Mapping[str, Any], name: str) -> bool:
    """A top-level true/false field; absent or null is false."""
    value = body.get(name)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise RequestError(name, "must be true or false")
    return value


def parse_request(body: Any, today: dt.date | None = None) -> Request:
    """Validate a v1 request body (a parsed JSON object) and derive every line's facts."""
    return _decoded(body, today) or _checked(body, today)


def _checked(body: Any, today: dt.date | None) -> Request:
    """The request read field by field: slower than :func:`_decoded`, and names what is wrong."""
    body = _object(body, (), _TOP_KEYS)
    payer = _text(body.get("payer"), ("payer",))
    services = body.get("services")
    if type(services) is not list or not services:
        raise RequestError("services", "must be a non-empty list of service lines")
    if len(services) > MAX_LINES:
        raise RequestError("services", f"has {len(services)} lines; the limit is {MAX_LINES}")
    explain = _flag(body, "explain")
    if body.get("request_id") is not None:  # the caller's own label: not a fact, but bounded like one
        _text(body["request_id"], ("request_id",))
    as_of = _date(body["date_of_service"], ("date_of_service",)) if body.get("date_of_service") is not None \
        else (today or current_day())
    common = _common_facts(body, as_of)
    parsed = [_service(item, i) for i, item in enumerate(services)]
    order = _order_of(common, len(parsed), _flag(body, "order_complete"))
    lines = []
    for code, system, facts in parsed:
        line = dict(common) if order is None else order.line(common, code)
        line.update(facts)
        lines.append(Line(code, system, line))
    auths = _authorizations(body["authorizations"]) if body.get("authorizations") is not None else ()
    return Request(payer, common.get("plan"), as_of, tuple(lines), auths, explain)


def _decoded(body: Any, today: dt.date | None) -> Request | None:
    """The request decoded in one step (engine/evaluation/contract.py), then its facts derived; None when
    anything is unusual, for :func:`_checked` to decide. Both give equal requests."""
    try:
        return _request(msgspec.convert(body, contract.Body), today)
    except (msgspec.ValidationError, fields.Unsure):
        return None


def _request(body: contract.Body, today: dt.date | None) -> Request:  # noqa: C901 - one step per field
    payer = body.payer.strip() or fields.blank()  # first, as _checked words a blank payer before the rest
    as_of = fields.day[body.date_of_service] if body.date_of_service is not None else (today or current_day())
    common: dict[str, Any] = {"payer": body.payer, "date_of_service": as_of}
    if body.plan is not None:
        common["plan"] = (body.plan.strip() or fields.blank())
    if body.place_of_service is not None:
        common["place_of_service"] = (body.place_of_service.strip() or fields.blank())
    if body.type_of_bill is not None:
        common["type_of_bill"] = fields.bill_type[body.type_of_bill]
    if body.state is not None:
        common["state"] = (body.state.strip() or fields.blank()).upper()
    patient = body.patient
    if patient is not None:
        if patient.birth_date is not None:
            common["patient.birth_date"], common["patient.age"] = fields.birth[patient.birth_date, as_of]
        if patient.sex is not None:
            common["patient.sex"] = (patient.sex.strip() or fields.blank()).lower()
    if body.diagnoses is not None:
        common["diagnoses"] = fields.diagnoses[body.diagnoses]
    provider = body.provider
    exemptions = _EMPTY
    if provider is not None:
        if provider.npi is not None:
            common["provider.npi"] = (provider.npi.strip() or fields.blank())
        if provider.specialty is not None:
            common["provider.specialty"] = (provider.specialty.strip() or fields.blank())
        if provider.network is not None:
            common["provider.network"] = (provider.network.strip() or fields.blank())
        if provider.type is not None:
            common["provider.type"] = (provider.type.strip() or fields.blank()).lower()
        if provider.exemptions:
            exemptions = fields.exemptions[provider.exemptions]
    common["provider.exemptions"] = exemptions
    order = _order_of(common, len(body.services), body.order_complete is True)
    lines = []
    for service in body.services:
        code, system = fields.service_code[service.code]
        if service.system is not None and (service.system.strip() or fields.blank()).upper() != system:
            raise fields.Unsure
        facts = common if order is None else order.line(common, code)  # one line: its facts are the common ones
        facts["code"], facts["system"] = code, system
        facts["modifiers"] = fields.modifiers[service.modifiers] if service.modifiers else _EMPTY
        facts["units"] = service.units
        if service.stage is not None:
            facts["stage"] = (service.stage.strip() or fields.blank()).lower()
        if service.trial_place_of_service is not None:
            facts["trial_place_of_service"] = (service.trial_place_of_service.strip() or fields.blank())
        if service.revenue_code is not None:
            facts["revenue_code"] = _revenue_code(service.revenue_code) or fields.blank()
        if service.trip_dates is not None or service.round_trips_in_10_days is not None \
                or service.round_trip_weeks is not None:
            _trips(facts, [fields.day[d] for d in service.trip_dates or ()],
                   {name: getattr(service, name) for name in TRIP_FACTS})
        lines.append(Line(code, system, facts))
    if body.request_id is not None and not body.request_id.strip():
        raise fields.Unsure
    auths = _authorizations(body.authorizations) if body.authorizations is not None else ()
    return Request(payer, common.get("plan"), as_of, tuple(lines), auths,
                   body.explain is True)
