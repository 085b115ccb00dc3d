"""Requests without a date of service are answered as of today, looked up by engine/evaluation/clock.py."""
from __future__ import annotations

import datetime as dt
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.evaluation import clock


def test_today_is_the_local_date() -> None:
    assert clock.current_day() == dt.date.today()


@settings(max_examples=50)
@given(st.dates(min_value=dt.date(1971, 1, 2), max_value=dt.date(2200, 12, 30)),
       st.integers(min_value=1, max_value=86_399))
def test_the_day_changes_exactly_at_local_midnight(day: dt.date, second: int) -> None:
    midnight = time.mktime((day.year, day.month, day.day, 0, 0, 0, 0, 0, -1))
    with pytest.MonkeyPatch.context() as patch:
        for now, expected in ((midnight - 1, day - dt.timedelta(days=1)), (midnight, day),
                              (midnight + second, dt.date.fromtimestamp(midnight + second)), (midnight - 1, day - dt.timedelta(days=1))):
            patch.setattr(clock.time, "time", lambda now=now: now)
            assert clock.current_day() == expected == dt.date.fromtimestamp(now)
