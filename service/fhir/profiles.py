"""Which version of an implementation guide a resource asks for, by a version-qualified profile."""
from __future__ import annotations

from typing import Any, Collection, Mapping, Protocol, TypeVar

from service.fhir.outcome import FhirError
from service.fhir.values import as_list


class Versioned(Protocol):
    """A version covreq serves, known by the version its guide's canonicals carry."""

    @property
    def ig_version(self) -> str: ...


V = TypeVar("V", bound=Versioned)


def requested_version(resource: Any, profiles: Collection[str], served: Mapping[str, V], guide: str,
                      where: str) -> V | None:
    """The version in ``served`` (keyed by IG version) that the first ``meta.profile`` of ``resource``
    among ``profiles`` names with a version (``url|version``); None when none names one. Raises
    FhirError (400 at ``where``), naming the versions of ``guide`` served, for a version not served."""
    meta = resource.get("meta") if isinstance(resource, Mapping) else None
    asked = [p.split("|", 1)[1] for p in as_list(meta.get("profile") if isinstance(meta, Mapping) else None)
             if isinstance(p, str) and "|" in p and p.split("|", 1)[0] in profiles]
    if not asked:
        return None
    if asked[0] not in served:
        shown = ", ".join(dict.fromkeys(v.ig_version for v in served.values()))
        raise FhirError(400, f"{guide} version {asked[0][:32]!r} is not served; covreq serves {shown}", where)
    return served[asked[0]]
