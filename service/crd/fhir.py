"""Small FHIR R4 helpers: code-system URIs, codings, references and a prefetch resource index."""
from __future__ import annotations

import re
from typing import Any, Iterable, Iterator

CPT = "CPT"
HCPCS = "HCPCS"
#: FHIR system URIs of billing codes -> the v1 ``system``. Both HCPCS URIs in use are accepted.
BILLING_SYSTEMS = {
    "http://www.ama-assn.org/go/cpt": CPT,
    "https://www.ama-assn.org/go/cpt": CPT,
    "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets": HCPCS,
    "http://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets": HCPCS,
    "https://bluebutton.cms.gov/resources/codesystem/hcpcs": HCPCS,
}
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
NPI = "http://hl7.org/fhir/sid/us-npi"
POS = "https://www.cms.gov/Medicare/Coding/place-of-service-codes/Place_of_Service_Code_Set"
#: HL7 RoleCode -> CMS place of service, from CRD's CMSMappableLocationCodes mapping table.
ROLE_CODE_POS = {"PHARM": "01", "SCHOOL": "03", "PROFF": "11", "MOBL": "15", "WORK": "18",
                 "HOSP": "21", "ER": "23", "SU": "24", "MHSP": "26", "SNF": "31", "PHU": "51",
                 "RHII": "54", "SURF": "55", "PSYCHF": "56", "RHU": "61", "MBL": "81"}
ROLE_CODE = "http://terminology.hl7.org/CodeSystem/v3-RoleCode"
BILLING_OPTIONS = "http://hl7.org/fhir/us/davinci-crd/StructureDefinition/ext-billing-options"

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


def billing_codings(concept: Any) -> Iterator[dict[str, Any]]:
    """CPT/HCPCS codings of a concept, then those of its CRD ``ext-billing-options``."""
    options = [ext.get("valueCodeableConcept") for ext in as_list(
        concept.get("extension") if isinstance(concept, dict) else None)
        if isinstance(ext, dict) and ext.get("url") == BILLING_OPTIONS]
    for candidate in [concept, *options]:
        yield from (c for c in codings(candidate) if c.get("system") in BILLING_SYSTEMS)


def date_part(value: Any) -> str | None:
    """The ``YYYY-MM-DD`` of a FHIR date or dateTime, or None for partial or absent dates."""
    return value[:10] if isinstance(value, str) and _DATE.match(value) else None


def reference_key(reference: Any) -> str | None:
    """``Type/id`` from a relative or absolute reference (a Reference object or a string)."""
    if isinstance(reference, dict):
        reference = reference.get("reference")
    if not isinstance(reference, str) or "/" not in reference:
        return None
    parts = reference.split("/_history/")[0].rstrip("/").split("/")
    return f"{parts[-2]}/{parts[-1]}" if len(parts) >= 2 else None


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
