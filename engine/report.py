"""Print problems for people (text), programs (json) and CI (GitHub workflow annotations)."""
from __future__ import annotations

import json
from typing import Iterable, TextIO

from .errors import Problem

FORMATS = ("text", "json", "github")


def _github_escape(text: str, property_: bool = False) -> str:
    text = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    return text.replace(":", "%3A").replace(",", "%2C") if property_ else text


def write_problems(problems: Iterable[Problem], fmt: str, out: TextIO, severity: str = "error") -> None:
    """Write ``problems`` to ``out`` in format ``fmt`` (one of :data:`FORMATS`)."""
    problems = list(problems)
    if fmt == "json":
        json.dump([{**p.as_dict(), "severity": severity} for p in problems], out, indent=2)
        out.write("\n")
    elif fmt == "github":
        for p in problems:
            out.write(f"::{severity} file={_github_escape(p.path, True)},line={p.line},col={p.column},"
                      f"title={_github_escape(p.code, True)}::{_github_escape(p.message)}\n")
    else:
        for p in problems:
            out.write(f"{p}\n")
