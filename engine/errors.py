"""The project's own error types: every problem carries a location and a stable code."""
from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Iterable


def did_you_mean(word: str, known: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` for the name in ``known`` closest to a misspelt ``word``, else ``""``."""
    close = difflib.get_close_matches(word, list(known), n=1)
    return f"; did you mean '{close[0]}'?" if close else ""


def bad_date(text: str) -> str:
    """How a date that cannot be read is worded, in policy files and requests alike."""
    if re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", text):
        return f"'{text}' is not a real calendar date"
    return f"'{text}' is not a date written YYYY-MM-DD"


@dataclass(frozen=True, order=True)
class Problem:
    """One located problem in a rule tree, printed as ``path:line:column: code: message``."""

    path: str
    line: int
    column: int
    code: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.column}: {self.code}: {self.message}"

    def as_dict(self) -> dict[str, object]:
        """The problem as a JSON-ready mapping."""
        return {"path": self.path, "line": self.line, "column": self.column,
                "code": self.code, "message": self.message}


class CovreqError(Exception):
    """Base of every error covreq raises on purpose."""


class ConditionError(CovreqError):
    """A condition failed to parse or type-check; positions are within the condition text."""

    def __init__(self, code: str, message: str, line: int = 1, column: int = 1) -> None:
        super().__init__(f"{line}:{column}: {code}: {message}")
        self.code = code
        self.message = message
        self.line = line
        self.column = column


class LoadError(CovreqError):
    """A rule tree had one or more problems; ``problems`` lists all of them, sorted."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class RequestError(CovreqError):
    """A request broke the v1 contract; ``location`` names the offending field."""

    def __init__(self, location: str, message: str) -> None:
        super().__init__(f"{location}: {message}" if location else message)
        self.location = location
        self.message = message
