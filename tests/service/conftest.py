"""Fixtures of the service tests: the fixture rule tree, clients, the CRD anchors, CRD checks."""
from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from fastapi.testclient import TestClient

from admin import ADMIN_TOKEN
from crd_calls import PAYER_IDS
from ehr_stub import StubEhr, serve
from service import Settings, create_app

HERE = Path(__file__).resolve().parent
FIXTURE_RULES = HERE / "fixtures" / "rules"
FIXTURE_PAYERS = HERE / "fixtures" / "payers.yaml"
REPO = HERE.parents[1]
BUNDLED_RULES = REPO / "rules"
ANCHORS = REPO / "tests" / "fixtures" / "crd"  # public HL7 examples, see SOURCES.md there
COVERAGE_INFORMATION = "http://hl7.org/fhir/us/davinci-crd/StructureDefinition/ext-coverage-information"
REASON_CODES = {"gold-card", "no-member-found", "no-active-coverage", "coverage-not-found",
                "auth-out-network", "technical", "detail-code"}


@pytest.fixture()
def rules_dir(tmp_path: Path) -> Path:
    """A private copy of the fixture rule tree that a test may edit."""
    return Path(shutil.copytree(FIXTURE_RULES, tmp_path / "rules"))


#: The CRD version the service tests' calls are answered in when they ask for none: 2.2, whose
#: shapes (indeterminate, several doc-needed) they check; tests/service/test_crd_versions.py checks
#: the out-of-the-box default (2.0.1) and every version served.
TEST_CRD_VERSION = "2.2"


@pytest.fixture()
def client(tmp_path: Path) -> TestClient:
    """A client of the service on the fixture rules and the fixture payer mapping."""
    return TestClient(create_app(str(FIXTURE_RULES), Settings(payers=FIXTURE_PAYERS, admin_token=ADMIN_TOKEN,
                                                              audit_path=tmp_path / "audit.jsonl",
                                                              crd_version=TEST_CRD_VERSION)))


@pytest.fixture()
def make_client(tmp_path: Path) -> Callable[..., TestClient]:
    """Build a client on the fixture rules (or ``rules=``) with settings overrides; the audit
    file is ``tmp_path / "audit.jsonl"`` unless ``audit_path`` is given, the admin token
    ``admin.ADMIN_TOKEN`` unless ``admin_token`` is, the CRD version ``TEST_CRD_VERSION`` unless
    ``crd_version`` is."""
    def build(rules: Path = FIXTURE_RULES, **overrides: Any) -> TestClient:
        defaults = {"payers": FIXTURE_PAYERS, "audit_path": tmp_path / "audit.jsonl", "admin_token": ADMIN_TOKEN,
                    "crd_version": TEST_CRD_VERSION}
        return TestClient(create_app(str(rules), Settings(**{**defaults, **overrides})))
    return build


@pytest.fixture()
def ehr() -> Iterator[StubEhr]:
    """A stub EHR FHIR server on loopback (``ehr.url``), recording requests and bearer tokens."""
    stub = StubEhr()
    server = serve(stub)
    yield stub
    server.shutdown()
    server.server_close()


@pytest.fixture()
def anchor() -> Callable[[str], dict[str, Any]]:
    """Load a CRD example request kept in tests/fixtures/crd by file name (a fresh copy each time)."""
    def load(name: str) -> dict[str, Any]:
        return copy.deepcopy(json.loads((ANCHORS / name).read_text(encoding="utf-8")))
    return load




def identified(request: dict[str, Any]) -> dict[str, Any]:
    """An IG example request whose payor Organization (Acme Health Plan) carries Acme's payer
    identifier in the prefetch, as an EHR that knows its payers sends it; the IG's own example
    names the payer by display only, which CRD hook-13 answers with a 400."""
    request["prefetch"]["organizations"]["entry"].append({"resource": {
        "resourceType": "Organization", "id": "acme-payer", "name": "Acme Health Plan",
        "identifier": [{"system": PAYER_IDS, "value": "ACME-01"}]}})
    return request


@pytest.fixture()
def identify() -> Callable[[dict[str, Any]], dict[str, Any]]:
    """``identified``, for tests that identify the payer of other IG examples."""
    return identified


@pytest.fixture()
def ig_order_sign(anchor: Callable[[str], dict[str, Any]]) -> Callable[[], dict[str, Any]]:
    """The IG's order-sign example (CRDServiceRequest.json) with its payer identified, fresh each call."""
    return lambda: identified(anchor("CRDServiceRequest.json"))


@pytest.fixture()
def crd() -> "CrdChecks":
    """The CRD conformance checks, for tests to call."""
    return CrdChecks()


class CrdChecks:
    """Checks of CRD responses written from the IG's text, independent of the service code."""

    @staticmethod
    def subs(extension: dict[str, Any]) -> dict[str, list[Any]]:
        return sub_extensions(extension)

    @staticmethod
    def invariants(extension: dict[str, Any]) -> None:
        assert_crd_invariants(extension)

    @staticmethod
    def no_empty_values(value: Any) -> None:
        no_empty_values(value)

    @staticmethod
    def coverage_information(action: dict[str, Any]) -> list[dict[str, Any]]:
        """The coverage-information repetitions of a systemAction, each checked for q1..q9."""
        found = [e for e in action["resource"].get("extension", []) if e["url"] == COVERAGE_INFORMATION]
        for extension in found:
            assert_crd_invariants(extension)
        return found


def sub_extensions(extension: dict[str, Any]) -> dict[str, list[Any]]:
    """The sub-extensions of a coverage-information repetition, grouped by url."""
    grouped: dict[str, list[Any]] = {}
    for sub in extension["extension"]:
        grouped.setdefault(sub["url"], []).append(sub)
    return grouped


def assert_crd_invariants(extension: dict[str, Any]) -> None:
    """Cardinalities of ext-coverage-information (CRD 2.2.1) and its invariants crd-ci-q1..q9."""
    assert extension["url"] == COVERAGE_INFORMATION
    subs = sub_extensions(extension)
    for url in ("coverage", "covered", "date", "coverage-assertion-id"):
        assert len(subs.get(url, [])) == 1, f"{url} must occur once"
    for url in ("pa-needed", "satisfied-pa-id"):
        assert len(subs.get(url, [])) <= 1, f"{url} occurs at most once"
    values = {url: [next(v for k, v in s.items() if k.startswith("value")) for s in items
                    if any(k.startswith("value") for k in s)] for url, items in subs.items()}
    covered = values["covered"][0]
    pa = values.get("pa-needed", [])
    doc = values.get("doc-needed", [])
    purpose = values.get("doc-purpose", [])
    info = values.get("info-needed", [])
    reasons = values.get("reason", [])
    assert covered in {"covered", "not-covered", "conditional", "indeterminate"}
    assert set(pa) <= {"no-auth", "auth-needed", "satisfied", "performpa", "conditional", "indeterminate"}
    assert set(doc) <= {"clinical", "admin", "patient", "conditional", "indeterminate"}
    assert set(purpose) <= {"withpa", "withclaim", "withorder", "retain-doc", "OTH"}
    assert set(info) <= {"performer", "location", "timeframe", "contract-window", "detail-code", "OTH"}
    assert "questionnaire" not in subs or doc, "q1: questionnaire needs doc-needed"
    assert not (covered == "not-covered" and pa), "q2: not-covered carries no pa-needed"
    conditional = "conditional" in [covered, *pa, *doc]
    assert bool(info) == conditional, "q3: info-needed exactly when something is conditional"
    if set(pa) & {"satisfied", "no-auth"} or covered == "not-covered":
        assert "withpa" not in purpose, "q4: no withpa without prior authorization"
    assert ("satisfied" in pa) == ("satisfied-pa-id" in subs), "q5"
    assert "OTH" not in info or reasons, "q6: info-needed OTH needs a reason"
    for reason in reasons:
        coded = any(c.get("code") in REASON_CODES for c in reason.get("coding", []))
        assert coded or reason.get("text"), "q7: a reason outside the value set needs text"
    assert not [p for p in purpose if p != "conditional"] or reasons, "q8: doc-purpose needs a reason"
    assert "indeterminate" not in [covered, *pa, *doc] or reasons, "q9"
    assert len(values["date"][0]) == 10 and values["coverage-assertion-id"][0]


def no_empty_values(value: Any, where: str = "$") -> None:
    """CDS Hooks JSON rule: no null, "", [] or {} anywhere in a response."""
    assert value not in (None, "", [], {}), f"empty value at {where}"
    if isinstance(value, dict):
        for key, item in value.items():
            no_empty_values(item, f"{where}.{key}")
    elif isinstance(value, list):
        for number, item in enumerate(value):
            no_empty_values(item, f"{where}[{number}]")
