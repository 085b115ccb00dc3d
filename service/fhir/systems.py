"""Code systems covreq reads from FHIR: billing codes, diagnoses, NPIs and places of service."""
from __future__ import annotations

from typing import Any, Iterator

from service.fhir.values import as_list, codings

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


def billing_codings(concept: Any) -> Iterator[dict[str, Any]]:
    """CPT/HCPCS codings of a concept, then those of its CRD ``ext-billing-options``."""
    options = [ext.get("valueCodeableConcept") for ext in as_list(
        concept.get("extension") if isinstance(concept, dict) else None)
        if isinstance(ext, dict) and ext.get("url") == BILLING_OPTIONS]
    for candidate in [concept, *options]:
        yield from (c for c in codings(candidate) if c.get("system") in BILLING_SYSTEMS)
