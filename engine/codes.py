"""Code literals: CPT, HCPCS Level II and ICD-10-CM codes, ranges, wildcards and code sets."""
from __future__ import annotations

import re
from dataclasses import dataclass

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


@dataclass(frozen=True, slots=True)
class CodeSet:
    """A set of codes given as exact codes, ranges and prefix wildcards; membership is fast."""

    exact: frozenset[str]
    ranges: tuple[CodeRange, ...] = ()
    prefixes: tuple[str, ...] = ()

    def __contains__(self, code: object) -> bool:
        if not isinstance(code, str):
            return False
        return (code in self.exact or code.startswith(self.prefixes)
                or bool(self.ranges) and any(code in r for r in self.ranges))

    def union(self, other: "CodeSet") -> "CodeSet":
        """The union of two code sets (``other`` itself when this one is empty)."""
        if not (self.exact or self.ranges or self.prefixes):
            return other
        return CodeSet(self.exact | other.exact, self.ranges + other.ranges,
                       self.prefixes + other.prefixes)


EMPTY = CodeSet(frozenset())


def parse_code_item(text: str, systems: tuple[str, ...]) -> CodeSet:
    """Parse one code-set member: a code, a range ``A-B`` or (ICD-10 only) a wildcard ``H02.83*``."""
    text = text.strip()
    if text.endswith("*"):
        if ICD10 not in systems:
            raise CodeError(f"wildcard '{text}' is only allowed for ICD-10-CM codes")
        stem = normalize(text[:-1])
        if not re.match(r"^[A-TV-Z]\d[0-9A-Z]{0,5}$", stem):
            raise CodeError(f"wildcard '{text}' must start with a valid ICD-10-CM category")
        return CodeSet(frozenset(), (), (stem,))
    if "-" in text:
        rng = parse_range(text, systems)
        if len(rng) <= EXPAND_LIMIT:
            return CodeSet(frozenset(rng.codes()))
        return CodeSet(frozenset(), (rng,))
    return CodeSet(frozenset({check_code(text, systems)}))


def parse_code_set(items: list[str], systems: tuple[str, ...]) -> CodeSet:
    """Parse a list of code-set members into one CodeSet."""
    result = EMPTY
    for item in items:
        result = result.union(parse_code_item(item, systems))
    return result


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
