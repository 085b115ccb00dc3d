"""The PAS versions covreq answers in, and how a request picks one.

STU 2.0.1 is the version CMS-0057-F names. The shapes covreq emits differ in two places (IG sources
of HL7/davinci-pas, tags 2.0.1, 2.1.0 and 2.2.1): from 2.2 ``$inquire`` answers a Parameters
resource with 0..* ``return`` Bundles (up to 2.1, the inquiry response Bundle itself), and from
2.1 ``ClaimResponse.request`` is required (covreq always writes it). A client picks a version with a
version-qualified profile in the request Bundle's ``meta.profile``
(``http://hl7.org/fhir/us/davinci-pas/StructureDefinition/profile-pas-request-bundle|2.2.1``);
without one the request is answered in 2.0.1.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from service.fhir.profiles import requested_version

PAS_SD = "http://hl7.org/fhir/us/davinci-pas/StructureDefinition"
REQUEST_PROFILES = (f"{PAS_SD}/profile-pas-request-bundle", f"{PAS_SD}/profile-pas-inquiry-request-bundle")


@dataclass(frozen=True)
class PasVersion:
    """The shapes of one PAS version."""

    code: str  # as the docs name it: 2.0.1, 2.1, 2.2
    ig_version: str  # as a versioned canonical carries it
    inquire_parameters: bool  # $inquire answers Parameters wrapping the Bundles (2.2)


VERSIONS: dict[str, PasVersion] = {
    "2.0.1": PasVersion("2.0.1", "2.0.1", False),
    "2.1": PasVersion("2.1", "2.1.0", False),
    "2.2": PasVersion("2.2", "2.2.1", True),
}
DEFAULT = VERSIONS["2.0.1"]
_BY_IG = {v.ig_version: v for v in VERSIONS.values()} | {"2.2.0": VERSIONS["2.2"]}


def requested(bundle: Mapping[str, Any]) -> PasVersion:
    """The version a request Bundle asks for with a version-qualified request-bundle profile, else
    2.0.1; raises FhirError (400) for a version covreq does not serve."""
    return requested_version(bundle, REQUEST_PROFILES, _BY_IG, "PAS", "Bundle.meta.profile") or DEFAULT
