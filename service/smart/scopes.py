"""SMART system scopes: ``system/<Type>.<permissions>`` in the SMART v1 form (``read``, ``write``,
``*``) and the v2 form (letters of ``cruds`` in that order), what a registered client may be granted
of what it asks for, and what a scope permits.

``system/*.read`` is ``{r, s}`` on every type, ``system/Questionnaire.rs`` the same on Questionnaire.
v2 query restrictions (``system/Observation.rs?category=...``) and patient or user scopes are not
understood: they are never granted.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable

#: The permission letters of SMART v2, in the order a scope writes them.
LETTERS = "cruds"
#: SMART v1 permissions as v2 letters.
V1 = {"read": frozenset("rs"), "write": frozenset("cud"), "*": frozenset(LETTERS)}
_SCOPE = re.compile(r"system/(?P<type>\*|[A-Z][A-Za-z]{1,63})\.(?P<perms>read|write|\*|c?r?u?d?s?)")


@dataclass(frozen=True)
class Scope:
    """One system scope: a resource type (``*`` for all) and its permission letters; ``v1`` when it
    was written in the SMART v1 form, so that what is granted is written as it was asked."""

    resource: str
    permissions: frozenset[str]
    v1: bool = False

    @classmethod
    def parse(cls, text: str) -> "Scope | None":
        """The scope ``text`` writes, or None for anything but a system scope this module understands."""
        match = _SCOPE.fullmatch(text)
        if match is None or not match["perms"]:
            return None
        perms = match["perms"]
        if perms in V1:
            return cls(match["type"], V1[perms], v1=True)
        return cls(match["type"], frozenset(perms))

    def __str__(self) -> str:
        if self.v1:
            named = next((name for name, letters in V1.items() if letters == self.permissions), None)
            if named:
                return f"system/{self.resource}.{named}"
        return f"system/{self.resource}." + "".join(c for c in LETTERS if c in self.permissions)

    def meet(self, other: "Scope") -> "Scope | None":
        """What both scopes allow (written in this scope's form), or None when that is nothing."""
        if self.resource != other.resource and "*" not in (self.resource, other.resource):
            return None
        permissions = self.permissions & other.permissions
        if not permissions:
            return None
        return Scope(other.resource if self.resource == "*" else self.resource, permissions, self.v1)

    def permits(self, resource: str, permission: str) -> bool:
        """Whether this scope allows ``permission`` (one letter of ``cruds``) on ``resource``."""
        return self.resource in ("*", resource) and permission in self.permissions


def parse_all(texts: Iterable[str]) -> list[Scope]:
    """The scopes among ``texts`` this module understands (others are left out)."""
    return [scope for scope in map(Scope.parse, texts) if scope is not None]


def grant(requested: str, allowed: Iterable[Scope]) -> list[str]:
    """The scopes to grant for a space-separated ``scope`` request: the part of each requested scope
    that some allowed scope also covers (``system/*.read`` asked of a client allowed
    ``system/Questionnaire.rs`` is ``system/*.read`` met with it: ``system/Questionnaire.read``),
    without repeats, in the order asked."""
    granted: list[str] = []
    allowed = list(allowed)
    for asked in parse_all(requested.split()):
        for permitted in allowed:
            met = asked.meet(permitted)
            if met is not None and str(met) not in granted:
                granted.append(str(met))
    return granted


def permits(granted: Iterable[Scope], resource: str, permission: str) -> bool:
    """Whether any of ``granted`` allows ``permission`` on ``resource``."""
    return any(scope.permits(resource, permission) for scope in granted)
