"""What the Inferno DTR payer-server kit checks, replayed against covreq for every DTR version served.

The kit (inferno-framework/davinci-dtr-test-kit, commit in tests/fixtures/dtr/SOURCES.md) sends a
$questionnaire-package request and $next-question requests a tester gives it, then asserts: a 200,
output Parameters valid for dtr-qpackage-output-parameters, Bundles valid for DTR-QPackageBundle,
adaptive Questionnaires valid for dtr-questionnaire-adapt-search, $next-question answers that are
QuestionnaireResponses (sdc-questionnaireresponse) with their contained form, and a sequence that
ends ``completed``. Its example requests live in tests/fixtures/dtr/inferno/; the ones built for the
kit's own payer are replayed with covreq's payer identifier and a code its rules govern, as a tester
would. Validation is fhir.resources' R4B models plus the profiles' FHIRPath constraints
(constraints.json, per version), evaluated with fhirpathpy.
"""
from __future__ import annotations

import copy
import json
import re
from typing import Any

import pytest
from dtr_helpers import (BUNDLED_RULES, CPT, FIXTURES, KIT_ITEM_EXPRESSIONS, MANUAL, PAYER_ID, answer, assert_constraints,
                         bundles, form_of, fhirpath, kit_item_expression_faults, kit_root_expression_faults,
                         library_defines, parses_as_r4, response_of)
from fastapi.testclient import TestClient

import engine
from service.dtr.adaptive import Answers, decide, envelope, next_question, page
from service.dtr.catalogue import Catalogue
from service.dtr.library import CQF_LIBRARY
from service.dtr.questionnaire import adaptive_id
from service.dtr.signing import Keyring
from service.dtr.versions import DTR_SD, INPUT_PROFILE, PAYER_CAPABILITIES, VERSIONS
from service.fhir.outcome import FhirError

PACKAGE, NEXT = "/fhir/Questionnaire/$questionnaire-package", "/fhir/Questionnaire/$next-question"
KIT = FIXTURES / "inferno"
SDC_SD = "http://hl7.org/fhir/uv/sdc/StructureDefinition"
ADAPTIVE = f"{SDC_SD}/sdc-questionnaire-questionnaireAdaptive"
POS_22 = {"valueCoding": {"system": "https://www.cms.gov/Medicare/Coding/place-of-service-codes/Place_of_Service_Code_Set",
                          "code": "22"}}


def kit(name: str) -> dict[str, Any]:
    """One of the kit's example requests."""
    return json.loads((KIT / f"{name}.json").read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def for_covreq(request: dict[str, Any], version: str | None) -> dict[str, Any]:
    """The kit's conformant package request as a tester sends it to covreq: its Coverage names
    covreq's Medicare payer and plan, its ServiceRequest a code covreq's rules govern, and its
    profile the DTR version wanted (none: the server's default)."""
    body = copy.deepcopy(request)
    if version is not None:
        body["meta"] = {"profile": [f"{INPUT_PROFILE}|{VERSIONS[version].ig_version}"]}
    for parameter in body["parameter"]:
        resource = parameter["resource"]
        if resource["resourceType"] == "Coverage":
            resource["payor"] = [{"identifier": PAYER_ID}]
            resource["class"][0]["value"] = "Medicare Part B"
            resource["period"] = {"start": "2024-01-01"}
        elif resource["resourceType"] == "ServiceRequest":
            resource["code"] = {"coding": [{"system": CPT, "code": "15823"}]}
            resource["occurrenceDateTime"] = "2024-03-14"
            resource["insurance"] = [{"reference": "Coverage/CoverageExample"}]
    return body


def next_parameters(response: dict[str, Any]) -> dict[str, Any]:
    """The kit's $next-question request shape (parameters-questionnaire-next-question-in) around ``response``."""
    shell = kit("next_question_initial_input_params_conformant")
    shell["parameter"][0]["resource"] = response
    return shell


@pytest.fixture(scope="module", params=[None, *VERSIONS])
def version(request: pytest.FixtureRequest) -> str | None:
    """The DTR version a request names (None: the server's default, 2.0.1)."""
    return request.param  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def package(module_client: TestClient, version: str | None) -> dict[str, Any]:
    """covreq's answer to the kit's conformant $questionnaire-package request."""
    request = for_covreq(kit("questionnaire_package_input_params_conformant"), version)
    assert_constraints(request)  # still the kit's conformant request: dtr-1
    reply = module_client.post(PACKAGE, json=request)
    assert reply.status_code in (200, 201), reply.text  # the kit: assert_response_status([200, 201])
    return reply.json()  # type: ignore[no-any-return]


def answered(version: str | None) -> str:
    return version or "2.0.1"


def test_the_package_validates_as_the_output_parameters_of_the_version_asked(package: dict[str, Any],
                                                                               version: str | None) -> None:
    parses_as_r4(package)
    assert_constraints(package, answered(version))
    names = {p["name"] for p in package["parameter"]}
    assert names == {VERSIONS[answered(version)].package_parameter}  # 2.0.1: PackageBundle 1..*; 2.2: packagebundle


def test_every_bundle_is_a_package_bundle_its_questionnaire_an_adaptive_search_form(module_client: TestClient,
                                                                                   package: dict[str, Any],
                                                                                   version: str | None) -> None:
    for bundle in bundles(package):
        assert bundle["type"] == "collection" and bundle["meta"]["profile"] == [f"{DTR_SD}/DTR-QPackageBundle"]
        assert fhirpath(bundle, "entry.first().resource.is(Questionnaire)") == [True]  # dtrb-1
        questionnaire = bundle["entry"][0]["resource"]
        assert questionnaire["meta"]["profile"] == [f"{DTR_SD}/dtr-questionnaire-adapt-search"]
        assert "item" not in questionnaire  # spec: an adaptive form's items come from $next-question
        assert [e["valueUrl"] for e in questionnaire["extension"] if e["url"] == ADAPTIVE] == ["http://testserver/fhir"]
        for entry in bundle["entry"]:  # fullUrl ends with Type/id
            resource = entry["resource"]
            if "id" in resource:
                assert entry["fullUrl"].endswith(f"/{resource['resourceType']}/{resource['id']}")
            else:
                assert entry["fullUrl"].startswith("urn:uuid:")
        for value_set in [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "ValueSet"]:
            found = module_client.get("/fhir/ValueSet", params={"url": f"{value_set['url']}|{value_set['version']}"})
            assert [e["resource"] for e in found.json()["entry"]] == [value_set]
            assert module_client.get(f"/fhir/ValueSet/{value_set['id']}").json() == value_set


def test_the_adaptive_response_carries_the_versions_shapes(package: dict[str, Any], version: str | None) -> None:
    shape = VERSIONS[answered(version)]
    response = response_of(bundles(package)[0])
    urls = [e["url"] for e in response["extension"]]
    if shape.coverage_in_context:
        assert f"{DTR_SD}/qr-coverage" not in urls and urls.count(f"{DTR_SD}/qr-context") == 2
    else:
        assert urls.count(f"{DTR_SD}/qr-coverage") == 1 and urls.count(f"{DTR_SD}/qr-context") == 1
    (use,) = [e for e in response["extension"] if e["url"] == f"{DTR_SD}/intendedUse"]
    assert use["valueCodeableConcept"]["coding"][0]["system"] == shape.doc_reason_system
    assert form_of(response)["derivedFrom"][0] == bundles(package)[0]["entry"][0]["resource"]["url"] + "|2022-01-07"


def test_next_question_replays_to_a_completed_response(module_client: TestClient, package: dict[str, Any],
                                                      version: str | None) -> None:
    """The kit's adaptive flow: every $next-question answer is a 200 QuestionnaireResponse (not
    Parameters) with its contained form, and the sequence ends completed. Each contained form passes
    the kit's expression checks (adaptive_next_questionnaire_expressions_test and _extensions_test:
    initial expressions and root variables in CQL, named by a Library of the package) and names that
    Library (cqf-library)."""
    response = response_of(bundles(package)[0])
    libraries = [e["resource"] for e in bundles(package)[0]["entry"] if e["resource"]["resourceType"] == "Library"]
    defines = {library["name"]: library_defines(library) for library in libraries}
    seen, initial = [], 0
    for step in range(4):
        if step == 1:
            response = answer(response, "place_of_service", POS_22)
        elif step == 2:
            for item in [i for g in form_of(response)["item"] if g["linkId"] == "documentation" for i in g["item"]]:
                value = {"valueAttachment": {"contentType": "application/pdf", "title": "record.pdf"}} \
                    if item["type"] == "attachment" else {"valueBoolean": True}
                response = answer(response, item["linkId"], value)
        reply = module_client.post(NEXT, json=next_parameters(response))
        assert reply.status_code in (200, 202), reply.text
        response = reply.json()
        assert response["resourceType"] == "QuestionnaireResponse"
        parses_as_r4(response)
        assert_constraints(response, answered(version))
        assert form_of(response)["meta"]["profile"] == [f"{DTR_SD}/dtr-questionnaire-adapt"]
        assert kit_item_expression_faults(form_of(response), defines) == []
        assert kit_root_expression_faults(form_of(response), defines) == []
        assert {e["valueCanonical"] for e in form_of(response)["extension"] if e["url"] == CQF_LIBRARY} \
            == {library["url"] for library in libraries}  # the kit's check_library_references
        initial += json.dumps(form_of(response)).count(KIT_ITEM_EXPRESSIONS[0])
        seen.append(response["status"])
        if response["status"] == "completed":
            break
    assert seen[-1] == "completed", seen
    assert initial > 0  # place_of_service is asked, pre-populated by CQL


def test_a_first_call_the_sdc_way_with_no_items_yet_gets_the_first_questions(module_client: TestClient,
                                                                            package: dict[str, Any]) -> None:
    empty = {k: v for k, v in response_of(bundles(package)[0]).items() if k != "item"}
    reply = module_client.post(NEXT, json=next_parameters(empty))
    assert reply.status_code == 200, reply.text
    assert reply.json()["status"] == "in-progress"
    assert {i["linkId"] for g in form_of(reply.json())["item"] for i in g.get("item", [])} >= {"place_of_service"}


def test_a_first_call_containing_a_copy_of_the_packages_adaptive_form_gets_the_first_questions(
        module_client: TestClient, package: dict[str, Any]) -> None:
    """SDC: the client contains the adaptive Questionnaire it was given (no items) in the response the
    package holds, and asks for the first questions."""
    bundle = bundles(package)[0]
    copied = {**bundle["entry"][0]["resource"], "id": "given"}
    first = {k: v for k, v in response_of(bundle).items() if k != "item"}
    first.update(contained=[copied], questionnaire="#given")
    reply = module_client.post(NEXT, json=next_parameters(first))
    assert reply.status_code == 200, reply.text
    assert form_of(reply.json())["derivedFrom"] == [f"{copied['url']}|{copied['version']}"]
    other = {**first, "contained": [{**copied, "url": copied["url"].replace("blepharoplasty", "other")}]}
    assert module_client.post(NEXT, json=next_parameters(other)).status_code == 422


@pytest.fixture(scope="module")
def start(package: dict[str, Any]) -> dict[str, Any]:
    return response_of(bundles(package)[0])


def _refused(client: TestClient, response: dict[str, Any]) -> dict[str, Any]:
    reply = client.post(NEXT, json=next_parameters(response))
    assert reply.status_code == 400, reply.text  # DTR spec-147: an invalid QuestionnaireResponse gets a 400
    assert reply.json()["resourceType"] == "OperationOutcome"
    return reply.json()["issue"][0]  # type: ignore[no-any-return]


@pytest.mark.parametrize("value", [{"valueBoolean": True}, {"valueString": "on file"}], ids=["boolean", "string"])
def test_an_attachment_answered_with_another_type_is_a_400(module_client: TestClient, start: dict[str, Any],
                                                           value: dict[str, Any]) -> None:
    asked = module_client.post(NEXT, json=next_parameters(answer(start, "place_of_service", POS_22))).json()
    (attached,) = [i["linkId"] for i in form_of(asked)["item"][-1]["item"] if i["type"] == "attachment"][:1]
    issue = _refused(module_client, answer(asked, attached, value))
    assert "valueAttachment" in issue["diagnostics"]


def test_an_attachment_the_client_retyped_as_an_attestation_still_wants_an_attachment(module_client: TestClient,
                                                                                       start: dict[str, Any]) -> None:
    """The contained form is the client's copy: its item types are not covreq's word."""
    asked = module_client.post(NEXT, json=next_parameters(answer(start, "place_of_service", POS_22))).json()
    (attached,) = [i for i in form_of(asked)["item"][-1]["item"] if i["type"] == "attachment"][:1]
    attached["type"] = "boolean"
    assert "valueAttachment" in _refused(module_client, answer(asked, attached["linkId"], {"valueBoolean": True}))[
        "diagnostics"]


def test_an_answer_given_as_an_object_instead_of_a_list_is_a_400(module_client: TestClient,
                                                                 start: dict[str, Any]) -> None:
    given = answer(start, "place_of_service", POS_22)
    for group in given["item"]:
        for item in group["item"]:
            if item["linkId"] == "place_of_service":
                item["answer"] = item["answer"][0]
    assert "list" in _refused(module_client, given)["diagnostics"]


def test_free_text_where_a_place_of_service_code_is_expected_is_a_400(module_client: TestClient,
                                                                      start: dict[str, Any]) -> None:
    issue = _refused(module_client, answer(start, "place_of_service", {"valueString": "<script>alert(1)</script>"}))
    assert "place-of-service code" in issue["diagnostics"]


def test_a_users_answer_without_information_origin_is_a_400(module_client: TestClient, start: dict[str, Any]) -> None:
    """The kit's next_question_input_params_no_origin_extension, on covreq's form."""
    bare = answer(start, "place_of_service", {**POS_22, "extension": []})
    assert "information-origin" in _refused(module_client, bare)["diagnostics"]
    unnamed = {"url": MANUAL["url"], "extension": [{"url": "source", "valueCode": "manual"}]}
    assert "dtrx-1" in _refused(module_client, answer(start, "place_of_service",
                                                      {**POS_22, "extension": [unnamed]}))["diagnostics"]


def test_a_date_time_for_a_date_item_is_a_400() -> None:
    """Cigna's advanced-imaging form asks the patient's birth date (a date item)."""
    ruleset = engine.load(BUNDLED_RULES)
    forms, keys, version = Catalogue(ruleset, "http://example.org/fhir"), Keyring.ephemeral(), VERSIONS["2.0.1"]
    form = forms.form(next(p for p in ruleset.policy_versions() if p.id == "cigna-advanced-imaging"))
    facts = {"code": "70551", "date_of_service": "2024-03-14"}
    decision = decide(ruleset, form, facts)
    ties = envelope(version, ["Coverage/cov-1"], ["ServiceRequest/sr-1"], "Patient/pat-1", ["withpa"])
    start = page(form, Answers(known=facts), decision, ties, forms.base, ruleset.digest, keys, version)
    date_item = form.item("patient.birth_date")
    assert date_item is not None and date_item["type"] == "date"
    groups = form_of(start)["item"]
    facts_group = next((g for g in groups if g["linkId"] == "facts"), None)
    if facts_group is None:
        facts_group = {"linkId": "facts", "text": "About this order", "type": "group", "item": []}
        groups.insert(1, facts_group)
    facts_group["item"].append(date_item)  # a client may show any item of the form; it is the date one
    with pytest.raises(FhirError) as refused:
        next_question(answer(start, "patient.birth_date", {"valueDateTime": "1950-01-01T00:00:00Z"}),
                      forms, ruleset, keys)
    assert refused.value.status == 400 and "valueDate" in refused.value.message
    assert next_question(answer(start, "patient.birth_date", {"valueDate": "1950-01-01"}), forms, ruleset, keys)


@pytest.mark.parametrize("name", ["questionnaire_package_input_params_conformant", "questionnaire_package_input_params_ri",
                                  "initial_static_questionnaire_request"])
def test_the_kits_own_package_requests_get_an_operation_outcome_4xx_never_a_500(module_client: TestClient,
                                                                                name: str) -> None:
    """Built for the kit's payer: covreq serves none of their payers (or the Coverage lacks its
    beneficiary), and says so in a 400."""
    reply = module_client.post(PACKAGE, json=kit(name))
    assert reply.status_code == 400 and reply.json()["resourceType"] == "OperationOutcome"


@pytest.mark.parametrize("name", ["next_question_initial_input_params_conformant",
                                  "next_question_input_params_no_origin_extension"])
def test_the_kits_own_next_question_requests_are_refused_as_not_signed_here(module_client: TestClient,
                                                                           name: str) -> None:
    reply = module_client.post(NEXT, json=kit(name))
    assert reply.status_code == 422 and "signed" in reply.json()["issue"][0]["diagnostics"]


def test_metadata_instantiates_the_dtr_payer_service_of_every_version_and_states_its_security(
        module_client: TestClient) -> None:
    statement = module_client.get("/fhir/metadata").json()
    parses_as_r4(statement)
    assert statement["instantiates"] == [f"{PAYER_CAPABILITIES}|{v.ig_version}" for v in VERSIONS.values()]
    assert statement["rest"][0]["security"]["description"]


def test_value_set_expand_by_url_by_id_and_posted(module_client: TestClient, start: dict[str, Any]) -> None:
    (bound,) = [i["answerValueSet"] for g in form_of(start)["item"] for i in g.get("item", []) if "answerValueSet" in i]
    url, version = bound.split("|")
    by_url = module_client.get("/fhir/ValueSet/$expand", params={"url": url, "valueSetVersion": version}).json()
    parses_as_r4(by_url)
    assert [c["code"] for c in by_url["expansion"]["contains"]] == ["19", "22"]
    posted = module_client.post("/fhir/ValueSet/$expand", json={"resourceType": "Parameters", "parameter": [
        {"name": "url", "valueUri": url}, {"name": "filter", "valueString": "22"}]}).json()
    assert [c["code"] for c in posted["expansion"]["contains"]] == ["22"]
    by_id = module_client.get(f"/fhir/ValueSet/{by_url['id']}/$expand", params={"count": 1}).json()
    assert by_id["expansion"]["total"] == 2 and len(by_id["expansion"]["contains"]) == 1
    missing = module_client.get("/fhir/ValueSet/$expand", params={"url": "http://elsewhere/ValueSet/x"})
    assert missing.status_code == 404 and missing.json()["resourceType"] == "OperationOutcome"
    assert module_client.get("/fhir/ValueSet/$expand").status_code == 400


def test_log_questionnaire_errors_is_received_and_bad_input_is_a_400(module_client: TestClient,
                                                                    start: dict[str, Any]) -> None:
    canonical = form_of(start)["derivedFrom"][0]
    body = {"resourceType": "Parameters", "parameter": [
        {"name": "questionnaire", "valueCanonical": canonical},
        {"name": "operationOutcome", "resource": {"resourceType": "OperationOutcome", "issue": [
            {"severity": "error", "code": "processing", "diagnostics": "initialExpression failed"}]}}]}
    reply = module_client.post("/fhir/Questionnaire/$log-questionnaire-errors", json=body)
    assert reply.status_code == 200 and reply.json()["issue"][0]["severity"] == "information"
    reply = module_client.post("/fhir/Questionnaire/$log-questionnaire-errors", json={**body, "parameter": body["parameter"][:1]})
    assert reply.status_code == 400
    not_r4 = copy.deepcopy(body)
    del not_r4["parameter"][1]["resource"]["issue"][0]["code"]  # issue.code is 1..1 in R4
    reply = module_client.post("/fhir/Questionnaire/$log-questionnaire-errors", json=not_r4)
    assert reply.status_code == 400 and "code" in reply.json()["issue"][0]["expression"][0]


def test_dtr_2_0_1_inputs_referenced_changedsince_as_date_time_and_an_encounter_order(module_client: TestClient) -> None:
    body = for_covreq(kit("questionnaire_package_input_params_conformant"), "2.0.1")
    body["parameter"] += [
        {"name": "referenced", "resource": {"resourceType": "Patient", "id": "examplepatient"}},
        {"name": "changedsince", "valueDateTime": "2001-01-01"},
        {"name": "order", "resource": {"resourceType": "Encounter", "id": "enc-1", "status": "planned",
                                       "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                                                 "code": "AMB"}}}]
    reply = module_client.post(PACKAGE, json=body)
    assert reply.status_code == 200, reply.text
    (outcome,) = [p["resource"] for p in reply.json()["parameter"] if p["name"] == "outcome"]
    assert any("Encounter/enc-1" in i["diagnostics"] and i["severity"] == "warning" for i in outcome["issue"])
    assert bundles(reply.json())


def test_a_version_not_served_is_a_400(module_client: TestClient) -> None:
    body = {**kit("questionnaire_package_input_params_conformant"), "meta": {"profile": [f"{INPUT_PROFILE}|1.0.0"]}}
    reply = module_client.post(PACKAGE, json=body)
    assert reply.status_code == 400 and reply.json()["issue"][0]["expression"] == ["Parameters.meta.profile"]


def test_the_standard_form_asked_for_by_canonical_validates_in_each_version(module_client: TestClient,
                                                                            start: dict[str, Any],
                                                                            version: str | None) -> None:
    standard = form_of(start)["derivedFrom"][0].replace("-adaptive|", "|")
    body = {**kit("questionnaire_package_input_params_conformant"), "parameter": [
        for_covreq(kit("questionnaire_package_input_params_conformant"), None)["parameter"][0],
        {"name": "questionnaire", "valueCanonical": standard}]}
    if version is not None:
        body["meta"] = {"profile": [f"{INPUT_PROFILE}|{VERSIONS[version].ig_version}"]}
    reply = module_client.post(PACKAGE, json=body)
    assert reply.status_code == 200, reply.text
    parses_as_r4(reply.json())
    assert_constraints(reply.json(), answered(version))
    (bundle,) = bundles(reply.json())
    form = bundle["entry"][0]["resource"]
    assert form["meta"]["profile"] == [f"{DTR_SD}/dtr-std-questionnaire"] and form["item"] and form["text"]
    assert f"{form['url']}|{form['version']}" == standard
    assert module_client.get(f"/fhir/Questionnaire/{form['id']}").json() == form
    adaptive_id = form["id"].replace(".", "-adaptive.", 1)  # medicare-opd-blepharoplasty-adaptive.2022-01-07
    adaptive = module_client.get(f"/fhir/Questionnaire/{adaptive_id}").json()
    assert adaptive["url"] == form["url"] + "-adaptive" and "item" not in adaptive


def test_the_operator_default_version_answers_requests_that_name_none(make_dtr_client: Any) -> None:
    client = make_dtr_client(dtr_version="2.2")
    reply = client.post(PACKAGE, json=for_covreq(kit("questionnaire_package_input_params_conformant"), None))
    assert {p["name"] for p in reply.json()["parameter"]} == {"packagebundle"}
    assert_constraints(reply.json(), "2.2")
    with pytest.raises(ValueError, match="covreq serves 2.0.1, 2.1, 2.2"):
        make_dtr_client(dtr_version="1.0")


def test_adaptive_ids_are_fhir_ids_and_long_policy_ids_do_not_collide() -> None:
    first, second = adaptive_id("a" * 80, "2024-01-01"), adaptive_id("a" * 79 + "b", "2024-01-01")
    assert first != second and all(re.fullmatch(r"[A-Za-z0-9\-.]{1,64}", i) for i in (first, second))


def test_the_kits_device_request_with_covreqs_payer_is_answered_with_what_it_needs(module_client: TestClient) -> None:
    """The kit's preset request (home oxygen, HCPCS E0424, a DeviceRequest): no bundled policy governs
    the code, so the answer is an outcome saying nothing is owed (docs/dtr.md, "Limits")."""
    body = kit("initial_static_questionnaire_request")
    (cov,) = [p["resource"] for p in body["parameter"] if p["resource"]["resourceType"] == "Coverage"]
    cov["payor"] = [{"identifier": PAYER_ID}]
    reply = module_client.post(PACKAGE, json=body)
    assert reply.status_code == 200, reply.text
    parses_as_r4(reply.json())
    (outcome,) = reply.json()["parameter"]
    assert outcome["name"] == "outcome"
    assert "HCPCS E0424 of DeviceRequest/devreq015" in outcome["resource"]["issue"][0]["diagnostics"]
