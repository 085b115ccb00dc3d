"""Code literals: CPT, HCPCS Level II and ICD-10-CM codes, ranges, wildcards and code sets."""
from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field
from typing import Iterable

CPT = "CPT"
HCPCS = "HCPCS"
ICD10 = "ICD-10-CM"

_SHAPES = {
    CPT: re.compile(r"^\d{4}[0-9FTU]$"),
    HCPCS: re.compile(r"^[A-V]\d{4}$"),
    ICD10: re.compile(r"^[A-TV-Z]\d[0-9A-Z][0-9A-Z]{0,4}$"),
}
_PARTS = re.compile(r"^([A-Z]*)(\d+)([A-Z]*)$")
#: Ranges up to this many codes are expanded into exact codes; longer ones are kept as intervals.
EXPAND_LIMIT = 2000
#: No range may span more codes than this (a guard against typos such as 10000-99999).
RANGE_LIMIT = 100_000
#: Most exact codes one policy's groups hold with their short ranges expanded; past it, ranges
#: stay intervals (the same codes, found by binary search), so expansion costs no more than this.
EXPAND_BUDGET = 100_000


class CodeError(ValueError):
    """A code literal is malformed; the message says how."""


def normalize(code: str) -> str:
    """Upper-case a code and drop ICD-10 dots and surrounding blanks."""
    return code.strip().upper().replace(".", "")


def system_of(code: str) -> str | None:
    """The code system a normalized service or diagnosis code belongs to, or None."""
    for system, shape in _SHAPES.items():
        if shape.match(code):
            return system
    return None


def check_code(code: str, systems: tuple[str, ...]) -> str:
    """Normalize ``code`` and check that it is well formed for one of ``systems``."""
    norm = normalize(code)
    if not any(_SHAPES[s].match(norm) for s in systems):
        raise CodeError(f"'{code}' is not a valid {' or '.join(systems)} code")
    return norm


def code_parts(code: str) -> tuple[str, int, str, int] | None:
    """(prefix, number, suffix, digit count) of a code such as ``K0813``; None if it has no digits."""
    m = _PARTS.match(code)
    return (m.group(1), int(m.group(2)), m.group(3), len(m.group(2))) if m else None


@dataclass(frozen=True, slots=True)
class CodeRange:
    """An inclusive range of codes sharing a prefix, a suffix and a digit count."""

    prefix: str
    low: int
    high: int
    suffix: str
    width: int

    def __contains__(self, code: str) -> bool:
        parts = code_parts(code)
        if parts is None:
            return False
        prefix, number, suffix, width = parts
        return (prefix, suffix, width) == self.shape() and self.low <= number <= self.high

    def shape(self) -> tuple[str, str, int]:
        """(prefix, suffix, digit count): the codes that can fall in the range share it."""
        return self.prefix, self.suffix, self.width

    def __len__(self) -> int:
        return self.high - self.low + 1

    def codes(self) -> list[str]:
        """Every code in the range, in order."""
        return [f"{self.prefix}{n:0{self.width}d}{self.suffix}" for n in range(self.low, self.high + 1)]


def parse_range(text: str, systems: tuple[str, ...]) -> CodeRange:
    """Parse ``A-B`` into a CodeRange, checking both ends and their order."""
    first, _, last = text.partition("-")
    low, high = check_code(first, systems), check_code(last, systems)
    m_low, m_high = _PARTS.match(low), _PARTS.match(high)
    if not (m_low and m_high) or (m_low.group(1), m_low.group(3), len(m_low.group(2))) != (
            m_high.group(1), m_high.group(3), len(m_high.group(2))):
        raise CodeError(f"range '{text}' joins codes of different shapes")
    rng = CodeRange(m_low.group(1), int(m_low.group(2)), int(m_high.group(2)), m_low.group(3),
                    len(m_low.group(2)))
    if rng.low > rng.high:
        raise CodeError(f"range '{text}' runs backwards")
    if len(rng) > RANGE_LIMIT:
        raise CodeError(f"range '{text}' spans {len(rng)} codes, more than the limit of {RANGE_LIMIT}")
    return rng


Shape = tuple[str, str, int]
#: Per shape, the sorted starts and the ends of disjoint ranges: what membership bisects.
_Bounds = dict[Shape, tuple[list[int], list[int]]]


@dataclass(frozen=True, slots=True)
class CodeSet:
    """A set of codes given as exact codes, ranges and prefix wildcards; membership is fast
    (a hash lookup, one ``startswith`` and a binary search, however many ranges there are)."""

    exact: frozenset[str]
    ranges: tuple[CodeRange, ...] = ()
    prefixes: tuple[str, ...] = ()
    _bounds: _Bounds = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        bounds: _Bounds = {}
        for r in merge_ranges(self.ranges):
            lows, highs = bounds.setdefault(r.shape(), ([], []))
            lows.append(r.low)
            highs.append(r.high)
        object.__setattr__(self, "_bounds", bounds)

    def __contains__(self, code: object) -> bool:
        if not isinstance(code, str):
            return False
        return (code in self.exact or code.startswith(self.prefixes)
                or bool(self._bounds) and self._in_ranges(code))

    def _in_ranges(self, code: str) -> bool:
        parts = code_parts(code)
        if parts is None:
            return False
        prefix, number, suffix, width = parts
        found = self._bounds.get((prefix, suffix, width))
        if found is None:
            return False
        lows, highs = found
        at = bisect.bisect_right(lows, number) - 1
        return at >= 0 and number <= highs[at]


def merge_ranges(ranges: Iterable[CodeRange]) -> list[CodeRange]:
    """The same codes as few ranges as possible: overlapping and touching ranges of one shape are
    joined; the result is sorted by shape and start."""
    merged: list[CodeRange] = []
    for r in sorted(ranges, key=lambda r: (r.shape(), r.low)):
        last = merged[-1] if merged else None
        if last is not None and last.shape() == r.shape() and r.low <= last.high + 1:
            if r.high > last.high:
                merged[-1] = CodeRange(last.prefix, last.low, r.high, last.suffix, last.width)
        else:
            merged.append(r)
    return merged


def join(parts: Iterable[CodeSet], budget: int = EXPAND_BUDGET) -> CodeSet:
    """One code set holding every code of ``parts``, built in time linear in their size: a part
    met twice is read once, ranges are merged first and then expanded into exact codes when the
    merged range holds at most :data:`EXPAND_LIMIT` codes, as long as no more than ``budget``
    codes come from ranges in all (the others stay ranges: the same codes, tested as fast)."""
    exact: set[str] = set()
    ranges: list[CodeRange] = []
    prefixes: dict[str, None] = {}
    seen: set[int] = set()
    for part in parts:
        if id(part) in seen:
            continue
        seen.add(id(part))
        exact.update(part.exact)
        ranges.extend(part.ranges)
        prefixes.update(dict.fromkeys(part.prefixes))
    wide = []
    for r in merge_ranges(ranges):
        if len(r) <= min(EXPAND_LIMIT, budget):
            exact.update(r.codes())
            budget -= len(r)
        else:
            wide.append(r)
    return CodeSet(frozenset(exact), tuple(wide), tuple(prefixes))


def parse_member(text: str, systems: tuple[str, ...]) -> CodeSet:
    """One code-set member as written: a code, a range ``A-B`` (not expanded) or (ICD-10 only) a
    wildcard ``H02.83*``. :func:`join` members into a set."""
    text = text.strip()
    if text.endswith("*"):
        if ICD10 not in systems:
            raise CodeError(f"wildcard '{text}' is only allowed for ICD-10-CM codes")
        stem = normalize(text[:-1])
        if not re.match(r"^[A-TV-Z]\d[0-9A-Z]{0,5}$", stem):
            raise CodeError(f"wildcard '{text}' must start with a valid ICD-10-CM category")
        return CodeSet(frozenset(), (), (stem,))
    if "-" in text:
        return CodeSet(frozenset(), (parse_range(text, systems),))
    return CodeSet(frozenset({check_code(text, systems)}))


def parse_code_item(text: str, systems: tuple[str, ...]) -> CodeSet:
    """One code-set member as a set: a range of up to :data:`EXPAND_LIMIT` codes is expanded."""
    return join([parse_member(text, systems)])


def parse_code_set(items: list[str], systems: tuple[str, ...]) -> CodeSet:
    """Parse a list of code-set members into one CodeSet."""
    return join([parse_member(item, systems) for item in items])


def _code_key(code: str) -> tuple[str, str, int, int]:
    m = _PARTS.match(code)
    if not m:
        return (code, "", 0, 0)
    return (m.group(1), m.group(3), len(m.group(2)), int(m.group(2)))


def item_order(item: str) -> tuple[str, str, int, int]:
    """Sort key of a code list item, a code or a range ``A-B``: its first code, in code order."""
    return _code_key(item.partition("-")[0])


def compress(codes: list[str]) -> list[str]:
    """Sort codes and write each run of two or more consecutive codes as a range ``A-B``."""
    ordered = sorted(set(codes), key=_code_key)
    out: list[str] = []
    run: list[str] = []

    def flush() -> None:
        out.extend([f"{run[0]}-{run[-1]}"] if len(run) > 1 else run)
        run.clear()
    for code in ordered:
        if run:
            (p, s, w, n), (p0, s0, w0, n0) = _code_key(code), _code_key(run[-1])
            if not (_PARTS.match(code) and (p, s, w) == (p0, s0, w0) and n == n0 + 1):
                flush()
        run.append(code)
    flush()
    return out


def covered_items(items: list[str], systems: tuple[str, ...] = (CPT, HCPCS)) -> dict[int, str]:
    """Items of a code list that another item already holds, by index: the covering item (a range
    holding a code listed on its own, or an earlier spelling of the same item). Items that do not
    parse are skipped: the loader reports them."""
    ranges: list[tuple[str, CodeRange]] = []
    for item in items:
        if "-" in item:
            try:
                ranges.append((item, parse_range(item, systems)))
            except CodeError:
                continue
    seen: set[str] = set()
    out: dict[int, str] = {}
    for index, item in enumerate(items):
        if item in seen:
            out[index] = item
        elif "-" not in item:
            holder = next((text for text, rng in ranges if item in rng), None)
            if holder is not None:
                out[index] = holder
        seen.add(item)
    return out
