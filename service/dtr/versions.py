"""The DTR versions covreq answers in, and how a request chooses one.

Each version differs in a few shapes only (from the IG sources of HL7/davinci-dtr, tags 2.0.1,
2.1.0 and 2.2.0): where the response names the Coverage (``qr-context`` 2..* with the orders up to
2.1, ``qr-coverage`` from 2.2), the code system of ``intendedUse`` (CRD's DocReason: the CRD
``temp`` system up to CRD 2.1, ``coverage-information-codes`` in CRD 2.2.1), the ``information-origin``
source codes (``auto``/``override``/``manual`` in DTR ``temp`` up to 2.1; ``auto-client``,
``auto-server``, ``override``, ``manual`` from 2.2) and the name of the package output parameter
(``PackageBundle`` up to 2.1, ``packagebundle`` in 2.2).

A client chooses with a version-qualified profile in the input Parameters' ``meta.profile``
(``http://hl7.org/fhir/us/davinci-dtr/StructureDefinition/dtr-qpackage-input-parameters|2.2.0``);
without one the operator's ``COVREQ_DTR_VERSION`` answers, 2.0.1 (the version CMS-0057-F names)
unless set. ``$next-question`` keeps the version the package was answered in: it is signed into the
response's context (service/dtr/signing.py).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from service.fhir.profiles import requested_version

DTR_SD = "http://hl7.org/fhir/us/davinci-dtr/StructureDefinition"
INPUT_PROFILE = f"{DTR_SD}/dtr-qpackage-input-parameters"
#: The DTR payer CapabilityStatement a server instantiates.
PAYER_CAPABILITIES = "http://hl7.org/fhir/us/davinci-dtr/CapabilityStatement/dtr-payer-service"


@dataclass(frozen=True)
class DtrVersion:
    """The shapes of one DTR version."""

    code: str  # as the settings and docs name it: 2.0.1, 2.1, 2.2
    ig_version: str  # as a versioned canonical carries it: 2.0.1, 2.1.0, 2.2.0
    package_parameter: str  # the output parameter holding each package Bundle
    outcome_parameter: str  # the output parameter holding the OperationOutcome
    coverage_in_context: bool  # the Coverage is a qr-context reference (else qr-coverage)
    doc_reason_system: str  # the code system of intendedUse codes
    server_origin: str  # the source code of what the server filled
    user_origins: frozenset[str]  # the source codes a client may give a user's answer
    crd_version: str  # the CRD version of the coverage-information a completed response states
    response_needs_items: bool  # the QuestionnaireResponse profile wants item 1..* (2.0.1, 2.1)


_V2_0_1 = DtrVersion("2.0.1", "2.0.1", "PackageBundle", "outcome", True,
                     "http://hl7.org/fhir/us/davinci-crd/CodeSystem/temp", "auto",
                     frozenset({"auto", "override", "manual"}), "2.0", True)
VERSIONS: dict[str, DtrVersion] = {
    "2.0.1": _V2_0_1,
    "2.1": replace(_V2_0_1, code="2.1", ig_version="2.1.0"),  # the same shapes, as far as covreq emits them
    "2.2": DtrVersion("2.2", "2.2.0", "packagebundle", "outcome", False,
                      "http://hl7.org/fhir/us/davinci-crd/CodeSystem/coverage-information-codes", "auto-server",
                      frozenset({"auto-client", "override", "manual"}), "2.2", False),
}
_BY_IG = {v.ig_version: v for v in VERSIONS.values()}


def version(code: str) -> DtrVersion:
    """The version named ``code`` (``2.0.1``, ``2.1``, ``2.2``); raises ValueError naming those served."""
    found = VERSIONS.get(code) or _BY_IG.get(code)
    if found is None:
        raise ValueError(f"DTR version {code!r} is not served; covreq serves {', '.join(VERSIONS)}")
    return found


def requested(body: Any, default: DtrVersion) -> DtrVersion:
    """The version an input Parameters asks for with a versioned ``dtr-qpackage-input-parameters``
    profile, else ``default``; raises FhirError (400) for a version covreq does not serve."""
    return requested_version(body, (INPUT_PROFILE,), _BY_IG, "DTR", "Parameters.meta.profile") or default
