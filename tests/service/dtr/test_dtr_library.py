"""The forms' CQL Libraries as a DTR client and the Inferno DTR kit see them: in every package
Bundle, with CQL and ELM content, named by the Questionnaire's ``cqf-library`` and readable by id
and by canonical url; the forms' expressions in CQL naming them; run as served, pre-populating
from the launched order."""
from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from cql_engine import run_elm
from dtr_helpers import (LIBRARY_STATEMENT, assert_constraints, bundles, kit_item_expression_faults,
                         kit_root_expression_faults, library_defines, package_request, parses_as_r4, service_request)
from fastapi.testclient import TestClient
from test_dtr_fhirpath import FORMS, RULES

from service.dtr.cql import SERVICE_REQUEST, define_name
from service.dtr.facts import PRE_POPULATED
from service.dtr.library import CQF_LIBRARY

BLEPH_LIBRARY = "http://testserver/fhir/Library/medicare-opd-blepharoplasty"


def _entries(bundle: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == kind]


def _content(library: dict[str, Any]) -> dict[str, str]:
    return {c["contentType"]: base64.b64decode(c["data"]).decode() for c in library["content"]}


def test_every_package_carries_the_library_its_questionnaire_names(dtr_client: TestClient) -> None:
    orders = [service_request("15823", pos="22"), service_request("64612", pos="22", order_id="sr-2")]
    found = bundles(dtr_client.post("/fhir/Questionnaire/$questionnaire-package", json=package_request(*orders)).json())
    assert len(found) == 2
    names = []
    for bundle in found:
        assert_constraints(bundle)  # the package Bundle's own (the Questionnaire first, one response)
        (library,) = _entries(bundle, "Library")
        (questionnaire,) = _entries(bundle, "Questionnaire")
        parses_as_r4(library)
        (named,) = [e["valueCanonical"] for e in questionnaire["extension"] if e["url"] == CQF_LIBRARY]
        assert named == library["url"]  # the kit compares the canonical with Library.url as it is
        entry = next(e for e in bundle["entry"] if e["resource"] is library or e["resource"] == library)
        assert entry["fullUrl"].endswith(f"/Library/{library['id']}")
        content = _content(library)
        assert set(content) == {"text/cql", "application/elm+json"}
        assert content["text/cql"].startswith(f"library {library['name']} version '{library['version']}'")
        assert json.loads(content["application/elm+json"])["library"]["identifier"] == {
            "id": library["name"], "version": library["version"]}
        names.append(library["name"])
    assert len(set(names)) == len(names)  # the kit wants library names unique across the packages


def test_a_library_resolves_by_id_by_url_and_by_url_and_version(dtr_client: TestClient) -> None:
    by_id = dtr_client.get("/fhir/Library/medicare-opd-blepharoplasty.2022-01-07")
    assert by_id.status_code == 200 and by_id.headers["content-type"].startswith("application/fhir+json")
    library = by_id.json()
    assert library["url"] == BLEPH_LIBRARY and library["version"] == "2022-01-07"
    assert dtr_client.get("/fhir/Library/medicare-opd-blepharoplasty").json()["url"] == BLEPH_LIBRARY
    for params in ({"url": BLEPH_LIBRARY}, {"url": f"{BLEPH_LIBRARY}|2022-01-07"},
                   {"url": BLEPH_LIBRARY, "version": "2022-01-07"}):
        found = dtr_client.get("/fhir/Library", params=params).json()
        parses_as_r4(found)
        assert found["total"] == 1 and found["entry"][0]["resource"] == library, params
    assert dtr_client.get("/fhir/Library", params={"url": BLEPH_LIBRARY, "version": "1999"}).json()["total"] == 0
    assert dtr_client.get("/fhir/Library", params={"url": "http://elsewhere.example/Library/x"}).json()["total"] == 0
    assert dtr_client.get("/fhir/Library").json()["total"] > 10
    missing = dtr_client.get("/fhir/Library/no-such-policy")
    assert missing.status_code == 404 and missing.json()["resourceType"] == "OperationOutcome"


def test_every_pre_populated_item_reads_its_define_in_cql_as_the_kit_requires() -> None:
    """Each pre-populated item's initialExpression is ``text/cql`` naming its fact's define in the
    form's Library (``"<library>"."<define>"``): the kit's "Initial expression logic not written in
    CQL" and expression-format checks, on every bundled form."""
    prepopulated = 0
    for policy in RULES.policy_versions():
        form = FORMS.form(policy)
        assert kit_item_expression_faults(form.questionnaire, {form.library.name: library_defines(form.library.resource)}) == []
        for group in form.questionnaire["item"]:
            for item in group.get("item", []):
                if item["linkId"] in PRE_POPULATED:
                    (initial,) = item["extension"]
                    assert initial["valueExpression"] == form.library.expression(define_name(item["linkId"]))
                    prepopulated += 1
    assert prepopulated > 0


def test_every_root_variable_is_cql_calling_its_librarys_answers_function_as_the_kit_requires() -> None:
    """The kit's verify_questionnaire_extensions on every bundled form: no "Variable expression
    logic not written in CQL" (every root ``variable`` is ``text/cql``) and no misformatted
    expression (each starts with the Library's name); stricter, each calls a function of that
    Library on ``%resource``."""
    variables = 0
    for policy in RULES.policy_versions():
        form = FORMS.form(policy)
        assert kit_root_expression_faults(form.questionnaire, {form.library.name: library_defines(form.library.resource)}) == []
        for variable in form.variables:
            named = LIBRARY_STATEMENT.fullmatch(variable["valueExpression"]["expression"])
            assert named is not None and named[3] == "(%resource)", variable
            variables += 1
    assert variables > 0


def test_with_trusted_issuers_reading_a_library_needs_a_jwt(make_dtr_client: Any, tmp_path: Path) -> None:
    (tmp_path / "ehr.pem").write_bytes(ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    issuers = tmp_path / "issuers.yaml"
    issuers.write_text("issuers:\n  - iss: https://ehr.example.org\n    public_key: ehr.pem\n")
    client = make_dtr_client(auth_issuers=issuers, service_url="https://covreq.example.org")
    for path in ("/fhir/Library", "/fhir/Library/medicare-opd-blepharoplasty"):
        refused = client.get(path)
        assert refused.status_code == 401 and refused.json()["resourceType"] == "OperationOutcome", path


def test_every_bundled_library_is_valid_r4() -> None:
    for policy in RULES.policy_versions():
        parses_as_r4(FORMS.form(policy).library.resource)


def test_as_served_the_initial_expressions_pre_populate_from_the_launched_order(dtr_client: TestClient) -> None:
    """A client that renders the standard form itself reads it and its Library, and runs the
    Library (cql-execution) on the patient's record with the launched order passed as
    ``service_request``: every initialExpression's define gives the launched order's value, not
    the one of the patient's other order listed first."""
    form = dtr_client.get("/fhir/Questionnaire/medicare-opd-botulinum-toxin.2020-07-01").json()
    (canonical,) = [e["valueCanonical"] for e in form["extension"] if e["url"] == CQF_LIBRARY]
    (library,) = [e["resource"] for e in dtr_client.get(f"/fhir/Library?url={canonical}").json()["entry"]]
    elm = json.loads(_content(library)["application/elm+json"])
    other = service_request("64612", pos="11", diagnoses=("Z00.00",), order_id="sr-other")
    launched = service_request("64615", pos="22", diagnoses=("G24.3",), order_id="sr-launched")
    patient = {"resourceType": "Patient", "id": "pat-1", "gender": "female", "birthDate": "1950-02-03"}
    record = {"resourceType": "Bundle", "type": "collection",
              "entry": [{"resource": r} for r in (patient, other, launched)]}
    (found,) = run_elm({"x": elm}, [{"library": "x", "bundle": record, "parameters": {SERVICE_REQUEST: launched}}])
    initial = {}
    for group in form["item"]:
        for item in group.get("item", []):
            for ext in item.get("extension", []):
                if ext["url"].endswith("sdc-questionnaire-initialExpression"):
                    named = LIBRARY_STATEMENT.fullmatch(ext["valueExpression"]["expression"])
                    assert named is not None and named[1] == library["name"]
                    initial[item["linkId"]] = found[named[2]]
    assert initial == {"place_of_service": "22", "diagnoses": ["G243"]}
    assert found["Code"] == "64615"
