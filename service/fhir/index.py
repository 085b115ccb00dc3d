"""Every resource of a hook call (prefetch, queries) by ``Type/id`` and by type."""
from __future__ import annotations

from typing import Any, Iterable, Iterator

from service.fhir.values import as_list, reference_key


class ResourceIndex:
    """Every resource found in prefetch values (Bundles flattened), by ``Type/id`` and by type."""

    def __init__(self, sources: Iterable[Any]) -> None:
        self.by_key: dict[str, dict[str, Any]] = {}
        self.by_type: dict[str, list[dict[str, Any]]] = {}
        for source in sources:
            for resource in self.flatten(source):
                self.by_type.setdefault(resource["resourceType"], []).append(resource)
                if isinstance(resource.get("id"), str):
                    self.by_key.setdefault(f"{resource['resourceType']}/{resource['id']}", resource)

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
        """The resource a reference points to, if present and (when given) of one of ``types``."""
        key = reference_key(reference)
        found = self.by_key.get(key) if key else None
        return found if found and (not types or found["resourceType"] in types) else None

    def of_type(self, resource_type: str) -> list[dict[str, Any]]:
        """Every indexed resource of one type, in prefetch order."""
        return self.by_type.get(resource_type, [])
