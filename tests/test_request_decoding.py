"""The one-step request decoder (engine/evaluation/contract.py) agrees with the field-by-field reading on every
body: the same Request with the same facts in the same order, or the same error naming the same field."""
from __future__ import annotations

import datetime as dt
import tracemalloc
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.errors import RequestError
from engine.evaluation.fields import Memo
from engine.evaluation.request import _checked, _decoded, parse_request

TODAY = dt.date(2025, 6, 1)
BASE: dict[str, Any] = {
    "payer": "medicare", "plan": "ma", "date_of_service": "2024-03-14", "place_of_service": "22",
    "type_of_bill": "0131", "state": "ny", "patient": {"birth_date": "1950-02-01", "sex": "Female", "id": "p1"},
    "diagnoses": ["h02.831", "M54.50"], "provider": {"npi": "1234567893", "specialty": "x", "network": "in",
                                                      "type": "VA", "state": "NY", "exemptions": ["gold-card"]},
    "services": [{"code": "15823", "system": "CPT", "modifiers": ["rt"], "units": 2, "stage": "Trial",
                  "trial_place_of_service": "11", "revenue_code": "450", "id": "l1"},
                 {"code": "15823", "trip_dates": ["2024-03-14", "2024-03-16"], "round_trip_weeks": 3},
                 {"code": 64490, "round_trips_in_10_days": 1}],
    "authorizations": [{"id": "A1", "code": "15823", "start": "2024-03-01", "end": "2024-04-01"}],
    "order_complete": True, "explain": False, "request_id": "r-1",
}
#: Values every field is tried with: right ones, wrong types, blanks, padding, limits, odd dates.
ODD = st.sampled_from([
    None, "", " ", " x ", "x" * 256, "x" * 257, 0, 1, 2.5, -1, 1_000_001, True, False, [], {}, ["a"], [" "], [1],
    {"code": "15823"}, "2024-02-30", "20240314", "1899-12-31", "2024-03-15", "2099-01-01", "15823", " j0541 ",
    "G0000", "HCPCS", "cpt", "0999T", ["x" * 257], ["a"] * 1001, [{"code": "15823"}] * 2,
])


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, child in value.items():
            found += _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += _paths(child, (*prefix, index))
    return found


PATHS = _paths(BASE)


def _set(body: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(body, dict):
        return {**body, head: _set(body.get(head), rest, value)}
    if isinstance(body, list) and isinstance(head, int) and head < len(body):
        return [_set(v, rest, value) if i == head else v for i, v in enumerate(body)]
    return body


def _outcome(read: Any, body: Any) -> Any:
    try:
        request = read(body, TODAY)
    except RequestError as exc:
        return ("error", str(exc))
    return request, [list(line.facts) for line in request.lines]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(PATHS), ODD), max_size=3),
       st.lists(st.sampled_from(["extra", "payer", "services", "plan", "patient", "provider"]), max_size=2))
def test_the_decoder_and_the_field_by_field_reading_agree(changes: list[tuple[Any, Any]], dropped: list[str]) -> None:
    body: Any = dict(BASE)
    for key in dropped:
        if key == "extra":
            body["extra"] = 1
        else:
            body.pop(key, None)
    for path, value in changes:
        body = _set(body, path, value)
    assert _outcome(parse_request, body) == _outcome(_checked, body)


def test_a_blank_payer_is_named_before_a_wrong_authorizations_field_in_both_readings() -> None:
    """Regression: the decoder named `authorizations` where the field-by-field reading named the
    blank `payer`, so the same body got two different 400s depending on which reading ran."""
    body = {**BASE, "payer": " ", "authorizations": {}}
    assert _outcome(parse_request, body) == _outcome(_checked, body) == ("error", "payer: must be a non-empty string")


def test_an_ordinary_request_is_decoded_in_one_step() -> None:
    request = _decoded(BASE, TODAY)
    assert request is not None and request == _checked(BASE, TODAY)
    assert request.lines[0].facts["type_of_bill"] == "131" and request.lines[2].facts["code"] == "64490"


def test_a_padded_payer_is_stripped_for_selection_but_kept_as_the_payer_fact() -> None:
    body = {**BASE, "payer": " medicare "}
    request = parse_request(body, TODAY)
    assert request.payer == "medicare" and request.lines[0].facts["payer"] == " medicare "
    assert request == _checked(body, TODAY)


def test_an_empty_patient_list_means_no_patient_facts_in_both_readings() -> None:
    body = {**BASE, "patient": []}
    assert _decoded(body, TODAY) is None
    assert "patient.age" not in parse_request(body, TODAY).lines[0].facts


def test_regression_long_distinct_modifier_lists_were_remembered_without_bound() -> None:
    """Normalized modifier and diagnosis lists are remembered only when short: callers choose them,
    so a stream of long distinct lists (here about 25 MB of them) must not be kept."""
    def body(n: int) -> dict[str, Any]:
        return {"payer": "medicare", "diagnoses": [f"Z{n:04d}.{i:03d}" + "9" * 240 for i in range(50)],
                "services": [{"code": "15823", "modifiers": [f"M{n}-{i}" + "9" * 240 for i in range(50)]}]}
    parse_request(body(0), TODAY)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for n in range(1, 1001):
            parse_request(body(n), TODAY)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 1_000_000, f"{grown} bytes kept after parsing"


def test_a_field_memo_computes_once_keeps_at_most_its_size_and_skips_what_it_must_not_keep() -> None:
    computed: list[int] = []

    def double(value: int) -> int:
        computed.append(value)
        return value * 2
    memo = Memo(double, 2, lambda value: value < 100)
    assert memo[1] == 2 and memo[1] == 2 and computed == [1]
    assert memo[2] == 4 and memo[3] == 6 and len(memo) <= 2  # full: it started again
    assert memo[500] == 1000 and 500 not in memo


def test_revenue_codes_are_four_digits_and_provider_kinds_lower_case_in_both_readings() -> None:
    body = {"payer": "medicare", "provider": {"type": " IHS "}, "services": [{"code": "22554", "revenue_code": "450"}]}
    for read in (parse_request, _checked):
        facts = read(body, TODAY).lines[0].facts
        assert (facts["revenue_code"], facts["provider.type"]) == ("0450", "ihs")
    for wrong in ("45", "04500", "45X", " "):
        bad = {"payer": "medicare", "services": [{"code": "22554", "revenue_code": wrong}]}
        for read in (parse_request, _checked):
            try:
                read(bad, TODAY)
            except RequestError as exc:
                assert exc.location == "services[0].revenue_code"
            else:
                raise AssertionError(f"revenue code {wrong!r} accepted")


def _trips(dates: list[str], **given: float) -> tuple[float | None, float | None]:
    facts = parse_request({"payer": "medicare", "services": [{"code": "A0428", "trip_dates": dates, **given}]},
                          TODAY).lines[0].facts
    return facts.get("round_trips_in_10_days"), facts.get("round_trip_weeks")


def test_a_trip_schedule_is_counted_in_10_day_periods_and_calendar_weeks() -> None:
    assert _trips(["2026-03-02", "2026-03-04", "2026-03-11"]) == (3, 2)  # day 1 to day 10: 3 round trips
    assert _trips(["2026-03-02", "2026-03-04", "2026-03-12"]) == (2, 2)  # the third is on day 11
    assert _trips(["2026-03-06", "2026-03-12", "2026-03-19"]) == (2, 3)  # Friday, Thursday, Thursday: 3 weeks
    assert _trips(["2026-03-02", "2026-03-20", "2026-04-01"]) == (1, 1)  # weeks with a week skipped
    assert _trips(["2026-03-09", "2026-03-02", "2026-03-02"]) == (3, 2)  # any order, two on one day
    assert _trips([]) == (None, None)
    assert _trips(["2026-03-02"], round_trip_weeks=4) == (1, 4)  # a count given wins over the dates


def test_a_long_trip_schedule_is_counted_in_linear_time() -> None:
    dates = [(dt.date(2024, 1, 1) + dt.timedelta(days=i)).isoformat() for i in range(1000)]
    lines = [{"code": "A0428", "trip_dates": dates}] * 300
    started = dt.datetime.now()
    request = parse_request({"payer": "medicare", "services": lines}, TODAY)
    assert request.lines[-1].facts["round_trips_in_10_days"] == 10
    assert (dt.datetime.now() - started).total_seconds() < 20
