"""The ext-coverage-information profile of each CRD version covreq answers in, written from the
IG's FSH (HL7/davinci-crd tags 2.0.1, 2.1.0, 2.2.1, input/fsh/extensions/CoverageInformation.fsh
and input/fsh/valuesets/CoverageInformationValuesets.fsh), independent of the service code:
sub-extension cardinalities, required value sets, detail shapes and the FHIRPath invariants,
evaluated with fhirpathpy (``memberOf``, which fhirpathpy lacks, is checked in Python). Where an
IG expression relies on FHIRPath singleton evaluation (a one-item collection as true in ``and`` and
``implies``), which fhirpathpy does not do, ``.exists()`` says it explicitly."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fhirpathpy import evaluate
from fhirpathpy.models import models

COVERAGE_INFORMATION = "http://hl7.org/fhir/us/davinci-crd/StructureDefinition/ext-coverage-information"
_COMMON_INVARIANTS = {
    "crd-ci-q5": "extension.where(url = 'pa-needed' and value = 'satisfied').exists() = "
                 "extension.where(url = 'satisfied-pa-id').exists()",
}
_LATER_INVARIANTS = {  # 2.1 and 2.2
    "crd-ci-q1": "extension.where(url='questionnaire').exists() implies extension.where(url = 'doc-needed').exists()",
    "crd-ci-q2": "extension.where(url = 'covered' and value = 'not-covered').exists() implies "
                 "extension.where(url = 'pa-needed').exists().not()",
    "crd-ci-q3": "extension.where((url = 'covered' or url = 'pa-needed' or url = 'doc-needed') and "
                 "value = 'conditional').count() >= 1 implies extension.where(url = 'info-needed').exists()",
    "crd-ci-q4": "extension.where(url = 'pa-needed' and value = 'satisfied').exists() and extension.where(url = "
                 "'doc-purpose').exists() implies extension.where(url = 'doc-purpose').all(value != 'withpa')",
    "crd-ci-q6": "extension.where(url = 'info-needed' and value = 'Other').exists() implies "
                 "extension.where(url = 'reason').exists()",
}


@dataclass(frozen=True)
class Profile:
    """One version's ext-coverage-information: sub-extension max cardinality, required codes, the
    value types of ``detail.value``, whether ``detail`` has a category, invariants, reason codes."""

    version: str
    most: dict[str, int]
    codes: dict[str, set[str]]
    detail_values: set[str]
    detail_category: bool
    invariants: dict[str, str]
    reason_codes: set[str]


_ONCE = {"coverage": 1, "covered": 1, "pa-needed": 1, "date": 1, "coverage-assertion-id": 1,
         "satisfied-pa-id": 1}
_LATER_SUBS = {"doc-purpose", "info-needed", "billingCode", "reason", "detail", "dependency", "questionnaire",
               "contact", "expiry-date", "doc-needed"}
_REQUIRED_AT_LEAST_ONCE = ("coverage", "covered", "date", "coverage-assertion-id")
PROFILES = {
    "2.0": Profile(
        "2.0",
        {**_ONCE, "doc-needed": 1, **{s: 99 for s in _LATER_SUBS - {"doc-needed", "expiry-date"} | {"response"}}},
        {"covered": {"not-covered", "covered", "conditional"},
         "pa-needed": {"no-auth", "auth-needed", "satisfied", "performpa", "conditional"},
         "doc-needed": {"clinical", "admin", "both", "conditional"},
         "doc-purpose": {"withpa", "withclaim", "withorder", "retain-doc", "OTH"},
         "info-needed": {"performer", "location", "timeframe", "contract-window", "OTH"}},
        {"valueBoolean", "valueString", "valueQuantity", "valuePeriod"}, False,
        {**_COMMON_INVARIANTS,
         "crd-ci-q1": "extension.where(url='questionnaire' or url='response').exists() implies "
                      "(extension.where(url = 'doc-needed').exists() and "
                      "extension.where(url = 'doc-needed').all(value != 'no-doc'))",
         "crd-ci-q2": "extension.where(url = 'covered' and value != 'not-covered').exists() implies "
                      "extension.where(url = 'pa-needed').exists()",
         "crd-ci-q3": "extension.where(url = 'info-needed').exists() implies extension.where((url = 'covered' "
                      "or url = 'pa-needed' or url = 'doc-needed') and value = 'conditional').count() >= 1",
         "crd-ci-q4": "extension.where(url = 'pa-needed' and value = 'satisfied').exists() and extension.where(url = "
                      "'doc-purpose').exists() implies extension.where(url = 'doc-purpose').all(value != 'PA')"},
        {"gold-card", "detail-code"}),
    "2.1": Profile(
        "2.1", {**_ONCE, **{s: 99 for s in _LATER_SUBS}},
        {"covered": {"not-covered", "covered", "conditional"},
         "pa-needed": {"no-auth", "auth-needed", "satisfied", "performpa", "conditional"},
         "doc-needed": {"clinical", "admin", "patient", "conditional"},
         "doc-purpose": {"withpa", "withclaim", "withorder", "retain-doc", "OTH"},
         "info-needed": {"performer", "location", "timeframe", "contract-window", "OTH"}},
        {"valueBoolean", "valueString", "valueUrl", "valueQuantity", "valuePeriod"}, False,
        {**_COMMON_INVARIANTS, **_LATER_INVARIANTS}, {"gold-card", "detail-code"}),
    "2.2": Profile(
        "2.2", {**_ONCE, **{s: 99 for s in _LATER_SUBS}},
        {"covered": {"not-covered", "covered", "conditional", "indeterminate"},
         "pa-needed": {"no-auth", "auth-needed", "satisfied", "performpa", "conditional", "indeterminate"},
         "doc-needed": {"clinical", "admin", "patient", "conditional", "indeterminate"},
         "doc-purpose": {"withpa", "withclaim", "withorder", "retain-doc", "OTH"},
         "info-needed": {"performer", "location", "timeframe", "contract-window", "detail-code", "OTH"}},
        {"valueBoolean", "valueString", "valueUrl", "valueQuantity", "valuePeriod"}, True,
        {**_COMMON_INVARIANTS, **_LATER_INVARIANTS,
         "crd-ci-q4": "extension.where(url = 'pa-needed' and (value = 'satisfied' or value = 'noauth' or value = "
                      "'not-covered')) and extension.where(url = 'doc-purpose').exists() implies "
                      "extension.where(url = 'doc-purpose').all(value != 'withpa')",
         "crd-ci-q6": "extension.where(url = 'info-needed' and value = 'OTH').exists() implies "
                      "extension.where(url = 'reason').exists()",
         "crd-ci-q8": "extension.where(url = 'doc-purpose' and value != 'conditional').exists() implies "
                      "extension.where(url = 'reason').exists()",
         "crd-ci-q9": "extension.where((url = 'covered' or url = 'pa-needed' or url = 'doc-needed') and "
                      "value = 'indeterminate').count() >= 1 implies extension.where(url = 'reason').exists()"},
        {"gold-card", "no-member-found", "no-active-coverage", "coverage-not-found", "auth-out-network",
         "technical"}),
}
CRD_TEMP = "http://hl7.org/fhir/us/davinci-crd/CodeSystem/temp"


def check_coverage_information(extension: dict[str, Any], version: str) -> None:
    """Assert that one ext-coverage-information repetition conforms to ``version``'s profile."""
    profile = PROFILES[version]
    assert extension["url"] == COVERAGE_INFORMATION
    grouped: dict[str, list[dict[str, Any]]] = {}
    for sub in extension["extension"]:
        grouped.setdefault(sub["url"], []).append(sub)
    assert set(grouped) <= set(profile.most), f"{version}: sub-extensions {set(grouped) - set(profile.most)}"
    for url in _REQUIRED_AT_LEAST_ONCE:
        assert url in grouped, f"{version}: {url} is required"
    for url, subs in grouped.items():
        assert len(subs) <= profile.most[url], f"{version}: {url} occurs at most {profile.most[url]} time(s)"
    for url, allowed in profile.codes.items():
        for sub in grouped.get(url, []):
            assert sub["valueCode"] in allowed, f"{version}: {url} {sub['valueCode']!r} is not in {sorted(allowed)}"
    for detail in grouped.get("detail", []):
        parts = {part["url"]: part for part in detail["extension"]}
        assert ("category" in parts) == profile.detail_category, f"{version}: detail.category"
        assert {"code", "value"} <= set(parts) <= {"category", "code", "value", "qualification"}
        (kind,) = [key for key in parts["value"] if key.startswith("value")]
        assert kind in profile.detail_values, f"{version}: detail value {kind}"
    for reason in grouped.get("reason", []):
        concept = reason["valueCodeableConcept"]
        for coding in concept.get("coding", []):
            if coding.get("system") == CRD_TEMP:
                assert coding["code"] in profile.reason_codes, f"{version}: reason code {coding['code']!r}"
        member = any(c.get("code") in profile.reason_codes for c in concept.get("coding", []))
        assert concept.get("text") or member, f"{version}: crd-ci-q7"
    for name, expression in profile.invariants.items():
        assert evaluate(extension, expression, {}, models["r4"]) in ([True], []), f"{version}: {name} fails"
