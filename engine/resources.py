"""Locate files shipped with covreq, in an installed wheel or in the source tree."""
from __future__ import annotations

from pathlib import Path

_HERE = Path(__file__).resolve().parent


def grammar_path(name: str = "condition.lark") -> Path:
    """Path of a grammar file: ``engine/_data/grammar`` in a wheel, ``grammar/`` in the source tree."""
    for candidate in (_HERE / "_data" / "grammar" / name, _HERE.parent / "grammar" / name):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"grammar file {name} is missing from the covreq installation")


def schema_path(name: str = "policy.schema.json") -> Path:
    """Path of a JSON Schema shipped inside the engine package."""
    return _HERE / "schemas" / name
