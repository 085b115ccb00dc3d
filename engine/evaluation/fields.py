"""Field readers of the one-step request decoder, remembered: dates, birth dates, codes and lists
repeat across requests, so each is normalized once (a hit is one dict lookup in C). A value the
decoder finds unusual raises :class:`Unsure`, and the request is read field by field instead."""
from __future__ import annotations

import datetime as dt
import re
from typing import Any, Callable

from engine.language.codes import CPT, HCPCS, normalize, system_of

#: Dates of service outside these years are refused as implausible.
MIN_YEAR, MAX_YEAR = 1900, 2200
ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
#: Lists of modifiers or diagnoses of at most this many texts are remembered once normalized, at
#: most this many lists of each: a bound on their memory whatever callers send.
_SHORT_LIST, _REMEMBERED_LISTS = 8, 4096


def age_on(birth: dt.date, day: dt.date) -> int:
    """Whole years from ``birth`` to ``day``."""
    return day.year - birth.year - ((day.month, day.day) < (birth.month, birth.day))


class Unsure(Exception):
    """The decoded request needs reading field by field (it may be wrong, or unusual but right)."""


def blank() -> str:
    """A decoded text field is blank: for the field-by-field reading to word (``value.strip() or blank()``)."""
    raise Unsure


class Memo(dict):  # type: ignore[type-arg]
    """A function of one hashable argument, remembered: ``memo[x]`` is ``compute(x)``, kept when
    ``keep(x)`` holds, at most ``size`` values (a full memo starts again). A hit is one dict lookup
    in C, with no Python frame: a request reads several of the memos below, each line one or two.
    Reads and writes are atomic under the GIL, so threads share a memo without a lock."""

    __slots__ = ("_compute", "_size", "_keep")

    def __init__(self, compute: Callable[[Any], Any], size: int, keep: Callable[[Any], bool] | None = None) -> None:
        super().__init__()
        self._compute, self._size, self._keep = compute, size, keep

    def __missing__(self, key: Any) -> Any:
        value = self._compute(key)
        if self._keep is None or self._keep(key):
            if len(self) >= self._size:
                self.clear()
            self[key] = value
        return value


def remembered(size: int, keep: Callable[[Any], bool] | None = None) -> Callable[[Callable[[Any], Any]], Memo]:
    """Decorator: the function as a :class:`Memo` (read it as ``function[argument]``)."""
    return lambda compute: Memo(compute, size, keep)


def _short(texts: tuple[str, ...]) -> bool:
    """Lists of at most :data:`_SHORT_LIST` texts are remembered (the same few repeat); longer ones
    are normalized afresh, so the memory callers can make the memos keep stays bounded."""
    return len(texts) <= _SHORT_LIST


@remembered(65536)
def day(text: str) -> dt.date:
    """A date written YYYY-MM-DD within the accepted years (dates repeat, so this is remembered)."""
    if not ISO_DATE.fullmatch(text):
        raise Unsure
    try:
        day = dt.date.fromisoformat(text)
    except ValueError:
        raise Unsure from None
    if not MIN_YEAR <= day.year <= MAX_YEAR:
        raise Unsure
    return day


@remembered(65536)
def birth(written_as_of: tuple[str, dt.date]) -> tuple[dt.date, int]:
    """A birth date (as written, with the date of service) on or before the date of service, with
    the age then (both repeat, so remembered)."""
    text, as_of = written_as_of
    birth = day[text]
    if birth > as_of:
        raise Unsure
    return birth, age_on(birth, as_of)


@remembered(65536)
def service_code(raw: str | int) -> tuple[str, str]:
    """A line's code normalized, with its system (codes repeat, so this is remembered)."""
    code = normalize(str(raw))
    system = system_of(code)
    if system not in (CPT, HCPCS):
        raise Unsure
    return code, system  # type: ignore[return-value]


@remembered(_REMEMBERED_LISTS, _short)
def modifiers(texts: tuple[str, ...]) -> frozenset[str]:
    """A line's modifiers, upper case."""
    return frozenset([(m.strip() or blank()).upper() for m in texts])


@remembered(_REMEMBERED_LISTS, _short)
def diagnoses(texts: tuple[str, ...]) -> frozenset[str]:
    """A request's diagnosis codes normalized."""
    return frozenset([normalize(text.strip() or blank()) for text in texts])


@remembered(65536)
def bill_type(text: str) -> str:
    """A type of bill as facts hold it: upper case, no leading zeros (the same few repeat)."""
    return (text.strip() or blank()).upper().lstrip("0")


@remembered(_REMEMBERED_LISTS, _short)
def exemptions(texts: tuple[str, ...]) -> frozenset[str]:
    """A provider's exemptions stripped."""
    return frozenset([text.strip() or blank() for text in texts])
