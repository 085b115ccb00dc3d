"""The ValueSets of the generated forms: read, search by canonical, and ``$expand``.

Every ValueSet a form's items bind is stored expanded (the values its policy's rules test), so
``$expand`` returns that expansion, filtered by ``filter`` and paged by ``offset``/``count`` when
asked. Canonicals resolve: ``GET /fhir/ValueSet?url=<url>[|version]`` and ``GET /fhir/ValueSet/<id>``.
"""
from __future__ import annotations

import datetime as dt
from typing import Any, Iterable, Mapping

from service.dtr.catalogue import Catalogue
from service.fhir.outcome import FhirError


def searchset(base: str, resources: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """A searchset Bundle of ``resources`` (each with an id), all matches."""
    found = list(resources)
    return {"resourceType": "Bundle", "type": "searchset", "total": len(found),
            "entry": [{"fullUrl": f"{base}/{r['resourceType']}/{r['id']}", "resource": r,
                       "search": {"mode": "match"}} for r in found]}


def search(forms: Catalogue, url: str | None, version: str | None) -> list[dict[str, Any]]:
    """The ValueSets whose url (and version) match; all of them without a url."""
    if url is not None and "|" in url and version is None:
        url, version = url.split("|", 1)
    return [vs for vs in forms.value_sets()
            if (url is None or vs["url"] == url) and (version is None or vs["version"] == version)]


def by_id(forms: Catalogue, resource_id: str) -> dict[str, Any] | None:
    """The ValueSet with ``resource_id``, or None."""
    return next((vs for vs in forms.value_sets() if vs["id"] == resource_id), None)


def expand_inputs(body: Any) -> dict[str, Any]:
    """The ``$expand`` input Parameters as a mapping of name to value (``url``, ``valueSetVersion``,
    ``filter``, ``offset``, ``count``, ``valueSet``); raises FhirError (400)."""
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters" \
            or not isinstance(body.get("parameter", []), list):
        raise FhirError(400, "the body of $expand must be a FHIR Parameters resource", "Parameters")
    found: dict[str, Any] = {}
    for index, parameter in enumerate(body.get("parameter", [])):
        if not isinstance(parameter, dict) or not isinstance(parameter.get("name"), str):
            raise FhirError(400, "every parameter needs a name", f"Parameters.parameter[{index}]")
        values = [v for k, v in parameter.items() if k.startswith("value") or k == "resource"]
        if len(values) != 1:
            raise FhirError(400, "every parameter carries one value", f"Parameters.parameter[{index}]")
        found[parameter["name"]] = values[0]
    return found


def expand(forms: Catalogue, query: Mapping[str, Any], resource_id: str | None = None) -> dict[str, Any]:
    """``$expand`` of the ValueSet named by ``resource_id``, or by ``url`` (and ``valueSetVersion``)
    in ``query`` (query string values, or :func:`expand_inputs` of a POST body); raises FhirError
    (400 for bad input, 404 for a ValueSet covreq does not hold)."""
    if isinstance(query.get("valueSet"), dict):
        raise FhirError(400, "covreq expands only its own ValueSets: name one by url", "Parameters.parameter")
    if resource_id is not None:
        found = by_id(forms, resource_id)
    elif isinstance(query.get("url"), str):
        version = query.get("valueSetVersion")
        matches = search(forms, query["url"], version if isinstance(version, str) else None)
        found = max(matches, key=lambda vs: vs["version"], default=None)
    else:
        raise FhirError(400, "$expand needs the url of a ValueSet (or its id in the path)", "url")
    if found is None:
        raise FhirError(404, f"no ValueSet {str(resource_id or query.get('url'))[:200]!r}", "url")
    contains = list(found["expansion"]["contains"])
    text = query.get("filter")
    if isinstance(text, str) and text:
        contains = [c for c in contains if text.lower() in (c["code"] + " " + c.get("display", "")).lower()]
    offset, count = _whole(query.get("offset"), "offset", 0), _whole(query.get("count"), "count", len(contains))
    expansion = {"timestamp": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                 "total": len(contains), "offset": offset, "contains": contains[offset:offset + count]}
    if not expansion["contains"]:
        del expansion["contains"]
    return {**found, "expansion": expansion}


def _whole(value: Any, name: str, default: int) -> int:
    if value is None:
        return default
    try:
        number = int(value) if not isinstance(value, bool) else -1
    except (TypeError, ValueError):
        number = -1
    if number < 0:
        raise FhirError(400, f"{name} must be a whole number", name)
    return number
