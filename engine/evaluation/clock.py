"""Today's date, looked up cheaply: every request without a date of service is answered as of today."""
from __future__ import annotations

import datetime as dt
import time

#: The local day last looked up, with the span of clock time (seconds since the epoch) it lasts.
_seen: tuple[dt.date, float, float] = (dt.date.min, 0.0, 0.0)


def current_day() -> dt.date:
    """The local date now, as :meth:`datetime.date.today` gives it, looked up again only when the
    clock has left the day seen last (a clock read instead of a date built per call)."""
    day, start, end = _seen
    now = time.time()
    if start <= now < end:
        return day
    return _look_up(now)


def _look_up(now: float) -> dt.date:
    global _seen
    local = time.localtime(now)
    day = dt.date(local.tm_year, local.tm_mon, local.tm_mday)
    after = day + dt.timedelta(days=1)
    start = time.mktime((day.year, day.month, day.day, 0, 0, 0, 0, 0, -1))
    end = time.mktime((after.year, after.month, after.day, 0, 0, 0, 0, 0, -1))
    _seen = (day, start, end)  # one assignment: a thread reads either the old span or the new
    return day
