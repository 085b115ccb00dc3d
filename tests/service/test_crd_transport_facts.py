"""FHIR -> v1 facts for scheduled transports and settings: a ServiceRequest's occurrenceTiming becomes
its lines' ``trip_dates``, an Encounter's class settles the place of service no location gives."""
from __future__ import annotations

from typing import Any

from engine.evaluation.request import parse_request
from service.crd.requests import MAX_TRIPS, _call_facts, _order, trip_dates
from service.fhir.index import ResourceIndex

HCPCS = "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets"


def _weekly(**repeat: Any) -> dict[str, Any]:
    return {"repeat": {"frequency": 3, "period": 1, "periodUnit": "wk", **repeat}}


def test_a_repeat_of_three_a_week_is_expanded_through_its_bounds() -> None:
    timing = _weekly(boundsPeriod={"start": "2026-03-02", "end": "2026-03-15"})
    assert trip_dates(timing, None) == ["2026-03-02", "2026-03-04", "2026-03-06", "2026-03-09", "2026-03-11",
                                        "2026-03-13"]


def test_a_repeat_with_a_count_starts_at_the_orders_date() -> None:
    timing = {"repeat": {"frequency": 1, "period": 1, "periodUnit": "wk", "count": 3}}
    assert trip_dates(timing, "2026-03-06") == ["2026-03-06", "2026-03-13", "2026-03-20"]


def test_events_are_taken_as_they_are_listed_once_each() -> None:
    timing = {"event": ["2026-03-04T09:00:00Z", "2026-03-02", "2026-03-02T15:00:00Z", "x", 3]}
    assert trip_dates(timing, None) == ["2026-03-02", "2026-03-04"]


def test_timings_that_say_no_schedule_give_none() -> None:
    for timing in (None, [], {"repeat": "x"}, _weekly(), _weekly(periodUnit="mo", count=3),
                   _weekly(frequency=0, count=3), _weekly(frequency=True, count=3), _weekly(count="3"),
                   {"repeat": {"periodUnit": "d", "count": 3}}):
        assert trip_dates(timing, None) == [], timing
    assert trip_dates(_weekly(count=3), "2026-02-30") == []  # not a calendar date
    assert len(trip_dates({"repeat": {"frequency": 1, "period": 1, "periodUnit": "d",
                                      "boundsPeriod": {"start": "2026-01-01", "end": "2099-01-01"}}}, None)) == MAX_TRIPS
    assert trip_dates({"repeat": {"period": 1e300, "periodUnit": "d", "count": 3}}, "2026-01-01") == ["2026-01-01"]


def test_an_ambulance_order_carries_its_schedule_to_each_line() -> None:
    order = _order({"resourceType": "ServiceRequest", "id": "t1", "status": "draft", "intent": "order",
                    "code": {"coding": [{"system": HCPCS, "code": "A0428"}]},
                    "occurrenceTiming": _weekly(boundsPeriod={"start": "2026-03-02", "end": "2026-03-13"})},
                   None, ResourceIndex(), 10)
    assert order.line_facts == {"trip_dates": ["2026-03-02", "2026-03-04", "2026-03-06", "2026-03-09",
                                               "2026-03-11", "2026-03-13"]}
    facts = parse_request({"payer": "medicare", "services": [{"code": "A0428", **order.line_facts}]}).lines[0].facts
    assert (facts["round_trips_in_10_days"], facts["round_trip_weeks"]) == (5, 2)


def test_a_single_occurrence_is_no_schedule() -> None:
    order = _order({"resourceType": "ServiceRequest", "id": "t2", "code": {"coding": [{"system": HCPCS, "code": "A0428"}]},
                    "occurrenceTiming": {"event": ["2026-03-02"]}}, None, ResourceIndex(), 10)
    assert order.line_facts == {}


def _encounter_facts(kind: str, location: dict[str, Any] | None = None) -> dict[str, Any]:
    encounter: dict[str, Any] = {"resourceType": "Encounter", "id": "e1", "class": {"code": kind}}
    sources: list[dict[str, Any]] = [encounter, {"resourceType": "Patient", "id": "p1"}]
    if location:
        encounter["location"] = [{"location": {"reference": "Location/l1"}}]
        sources.append({"resourceType": "Location", "id": "l1", **location})
    return _call_facts({"patientId": "p1", "encounterId": "e1"}, ResourceIndex(sources))


def test_an_encounters_class_settles_the_place_of_service_only_when_no_location_does() -> None:
    assert _encounter_facts("EMER")["place_of_service"] == "23"
    assert _encounter_facts("IMP")["place_of_service"] == "21"
    assert _encounter_facts("HH")["place_of_service"] == "12"
    assert "place_of_service" not in _encounter_facts("AMB")  # office or hospital outpatient: not said
    office = {"type": [{"coding": [{"system": "https://www.cms.gov/Medicare/Coding/place-of-service-codes/"
                                              "Place_of_Service_Code_Set", "code": "11"}]}]}
    assert _encounter_facts("EMER", office)["place_of_service"] == "11"


def test_a_dtr_form_reads_an_orders_trip_dates_as_the_counts_it_asks() -> None:
    from service.dtr.facts import flat_facts, v1_body
    body = {"payer": "medicare", "services": [{"code": "A0428", "trip_dates": ["2026-03-06", "2026-03-12", "2026-03-19"]}]}
    flat = flat_facts(body)
    assert (flat["round_trips_in_10_days"], flat["round_trip_weeks"]) == (2, 3) and "trip_dates" not in flat
    assert parse_request(v1_body(flat)).lines[0].facts["round_trip_weeks"] == 3
    given = flat_facts({"payer": "medicare", "services": [{"code": "A0428", "round_trip_weeks": 1,
                                                            "trip_dates": ["2026-03-06", "2026-03-12", "2026-03-19"]}]})
    assert given["round_trip_weeks"] == 1  # a count the request gives wins, as in the engine
    assert "round_trip_weeks" not in flat_facts({"payer": "m", "services": [{"code": "A0428", "trip_dates": ["x"]}]})


def test_event_dates_that_are_not_calendar_dates_are_dropped() -> None:
    assert trip_dates({"event": ["2026-02-30", "2026-03-02"]}, None) == ["2026-03-02"]
