"""One parsed rule file with its locations, and the problems found while loading a tree."""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

from engine.errors import Problem
from engine.loading.yamlsource import Locations
from engine.policy import Location


@dataclass
class Source:
    """One parsed YAML file with its locations."""

    path: str
    data: Any
    locations: Locations
    text: str

    @cached_property
    def lines(self) -> list[str]:
        """The file's lines (needed only to place a problem inside a condition)."""
        return self.text.splitlines()

    def at(self, *keys: object) -> Location:
        """Location of the value at ``keys`` (or its nearest located parent)."""
        spot = self.locations.find(keys)
        return Location(self.path, spot.line, spot.column)

    def raw(self, *keys: object) -> str:
        """The value at ``keys`` as text, spelled as written (so ``01234`` keeps its zero)."""
        return self._spelled(self.value_at(keys), keys)

    def texts(self, *keys: object) -> tuple[str, ...]:
        """The items of the list at ``keys``, each as :meth:`raw` gives it."""
        return tuple(item if item.__class__ is str else self._spelled(item, (*keys, i))
                     for i, item in enumerate(self.value_at(keys)))

    def _spelled(self, value: Any, keys: tuple[object, ...]) -> str:
        if isinstance(value, (int, float)) and not isinstance(value, bool) and (spot := self.locations.get(keys)) and spot.raw:
            return spot.raw
        return str(value)

    def value_at(self, keys: tuple[object, ...]) -> Any:
        """The value at ``keys``."""
        value = self.data
        for key in keys:
            value = value[key]  # type: ignore[index]
        return value


class Problems(list[Problem]):
    """Collects problems."""

    def add(self, where: Location, code: str, message: str) -> None:
        """Record one problem at ``where``."""
        self.append(Problem(where.path, where.line, where.column, code, message))
