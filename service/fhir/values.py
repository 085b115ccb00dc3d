"""Reading FHIR JSON defensively: lists, members, codings, dates and references never raise."""
from __future__ import annotations

import re
from typing import Any, Iterator

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}")


def as_list(value: Any) -> list[Any]:
    """``value`` as a list: lists as they are, a lone object wrapped, anything absent empty."""
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def member(value: Any, key: str) -> Any:
    """``value[key]`` when ``value`` is a JSON object, else None (hostile input never raises)."""
    return value.get(key) if isinstance(value, dict) else None


def codings(concept: Any) -> Iterator[dict[str, Any]]:
    """The well-formed codings of a CodeableConcept (anything else yields nothing)."""
    if isinstance(concept, dict):
        for coding in as_list(concept.get("coding")):
            if (isinstance(coding, dict) and isinstance(coding.get("code"), str)
                    and isinstance(coding.get("system", ""), str)):
                yield coding


def date_part(value: Any) -> str | None:
    """The ``YYYY-MM-DD`` of a FHIR date or dateTime, or None for partial or absent dates."""
    return value[:10] if isinstance(value, str) and _DATE.match(value) else None


def contained(resource: Any, reference: Any, *types: str) -> dict[str, Any] | None:
    """The resource contained in ``resource`` that a local reference (``#id``) points to, if it is
    there and (when given) of one of ``types``; None for any other reference."""
    if isinstance(reference, dict):
        reference = reference.get("reference")
    if not isinstance(reference, str) or not reference.startswith("#") or len(reference) < 2:
        return None
    return next((r for r in as_list(member(resource, "contained")) if isinstance(r, dict)
                 and r.get("id") == reference[1:] and (not types or r.get("resourceType") in types)), None)


def reference_key(reference: Any) -> str | None:
    """``Type/id`` from a relative or absolute reference (a Reference object or a string)."""
    if isinstance(reference, dict):
        reference = reference.get("reference")
    if not isinstance(reference, str) or "/" not in reference:
        return None
    parts = reference.split("/_history/")[0].rstrip("/").split("/")
    return f"{parts[-2]}/{parts[-1]}" if len(parts) >= 2 else None
