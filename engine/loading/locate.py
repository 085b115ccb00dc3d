"""Find where things are written in rule files, for tools that report on compiled policies.

Compiled rules only remember where the rule starts; tooling (coverage, lint) wants the line and
column of a predicate inside a ``when``, or of a catalogue key. This module re-reads the file
(cached by path, modification time and size) with the same located YAML reader the loader uses.
"""
from __future__ import annotations

import os
from functools import lru_cache
from typing import Any

from engine.policy import Location, Rule
from engine.loading.yamlsource import KEY, Locations, Spot, YamlError, load_yaml, position_in_scalar


@lru_cache(maxsize=512)
def _read(path: str, stamp: tuple[int, int]) -> tuple[Any, Locations, tuple[str, ...]]:
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    try:
        data, locations = load_yaml(text)
    except YamlError:
        return None, Locations(), ()
    return data, locations, tuple(text.splitlines())


def read_located(path: str) -> tuple[Any, Locations, tuple[str, ...]]:
    """The file's data, its :class:`Locations` and its lines; empty when it cannot be read."""
    try:
        stat = os.stat(path)
        return _read(path, (stat.st_mtime_ns, stat.st_size))
    except (OSError, UnicodeDecodeError):
        return None, Locations(), ()


def key_location(path: str, *keys: object) -> Location:
    """Where the mapping key at ``keys`` is written (e.g. ``("documentation", "wopd")``)."""
    spot = read_located(path)[1].find((*keys, KEY))
    return Location(path, spot.line, spot.column)


def _rule_key(rule: Rule, data: Any, locations: Locations) -> tuple[object, ...] | None:
    """The path of the entry of ``rules`` that starts where ``rule`` does."""
    rules = data.get("rules") if isinstance(data, dict) else None
    for index in range(len(rules) if isinstance(rules, list) else 0):
        spot = locations.get(("rules", index))
        if spot and (spot.line, spot.column) == (rule.location.line, rule.location.column):
            return "rules", index
    return None


def condition_location(rule: Rule, line: int = 1, column: int = 1) -> Location:
    """File position of ``line``:``column`` inside the rule's ``when`` (the rule itself if unknown)."""
    data, locations, lines = read_located(rule.location.path)
    key = _rule_key(rule, data, locations)
    spot: Spot | None = locations.get((*key, "when")) if key else None
    if spot is None:
        return rule.location
    file_line, file_column = position_in_scalar(spot, line, column, list(lines))
    return Location(rule.location.path, file_line, file_column)
