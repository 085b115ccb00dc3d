"""Every resource of a hook call (prefetch, queries) by ``Type/id`` and by type."""
from __future__ import annotations

from typing import Any, Iterable, Iterator

from service.fhir.values import as_list, reference_key


class ResourceIndex:
    """Every resource found in prefetch values and query results (Bundles flattened), by
    ``Type/id`` and by type. It remembers the references it was asked for and did not hold
    (``misses``: ``Type/id`` -> the reference as written), so what was read tells what to fetch."""

    def __init__(self, sources: Iterable[Any] = ()) -> None:
        self.by_key: dict[str, dict[str, Any]] = {}
        self.by_type: dict[str, list[dict[str, Any]]] = {}
        self.misses: dict[str, str] = {}
        self.add(sources)

    def add(self, sources: Iterable[Any]) -> None:
        """Index every resource of ``sources`` (resources or Bundles); the first of a ``Type/id`` wins.
        A Bundle entry whose ``fullUrl`` is a URN (``urn:uuid:...``) is found by that URN too, as the
        references of a Bundle that names its resources so are written."""
        for source in sources:
            for entry in as_list(source.get("entry")) if isinstance(source, dict) and source.get("resourceType") == "Bundle" else []:
                resource = entry.get("resource") if isinstance(entry, dict) else None
                url = entry.get("fullUrl") if isinstance(entry, dict) else None
                if isinstance(url, str) and url.startswith("urn:") and isinstance(resource, dict) \
                        and isinstance(resource.get("resourceType"), str):
                    self.by_key.setdefault(url, resource)
            for resource in self.flatten(source):
                key = f"{resource['resourceType']}/{resource['id']}" if isinstance(resource.get("id"), str) else None
                if key in self.by_key:
                    continue
                self.by_type.setdefault(resource["resourceType"], []).append(resource)
                if key:
                    self.by_key[key] = resource

    @staticmethod
    def flatten(value: Any) -> Iterator[dict[str, Any]]:
        """A resource itself, or the entry resources of a Bundle; nothing for anything else."""
        if not isinstance(value, dict) or not isinstance(value.get("resourceType"), str):
            return
        if value["resourceType"] != "Bundle":
            yield value
            return
        for entry in as_list(value.get("entry")):
            resource = entry.get("resource") if isinstance(entry, dict) else None
            if isinstance(resource, dict) and isinstance(resource.get("resourceType"), str):
                yield resource

    def resolve(self, reference: Any, *types: str) -> dict[str, Any] | None:
        """The resource a reference points to, if present and (when given) of one of ``types``;
        a reference of one of ``types`` not held is remembered in ``misses``."""
        raw = reference.get("reference") if isinstance(reference, dict) else reference
        key = reference_key(reference) or (raw if isinstance(raw, str) and raw.startswith("urn:") else None)
        found = self.by_key.get(key) if key else None
        if key and not key.startswith("urn:") and found is None and (not types or key.split("/")[0] in types):
            self.misses.setdefault(key, raw)
        return found if found and (not types or found["resourceType"] in types) else None

    def of_type(self, resource_type: str) -> list[dict[str, Any]]:
        """Every indexed resource of one type, in prefetch order."""
        return self.by_type.get(resource_type, [])
