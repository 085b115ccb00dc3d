"""The forms' root variables: CQL calling the form Library's answers functions on the
QuestionnaireResponse being filled (``%resource``), run with the CQL reference engine. They read
answers as the engine reads them, and the FHIRPath enablement of documentation items, evaluated on
them, agrees with the engine on which items may be owed."""
from __future__ import annotations

from typing import Any

from cql_engine import run_elm
from dtr_helpers import ICD10CM, LIBRARY_STATEMENT, POS, fhirpath
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from test_dtr_cql import translated
from test_dtr_fhirpath import FORMS, RULES, answered, answers_response

import engine
from engine.evaluate import run_policy
from engine.request import parse_request
from service.dtr import cqlexpr as c
from service.dtr.cqlanswers import RESOURCE
from service.dtr.facts import v1_body
from service.dtr.questionnaire import DOC_PREFIX, Form

ENABLE = "http://hl7.org/fhir/uv/sdc/StructureDefinition/sdc-questionnaire-enableWhenExpression"
PATIENT = {"resourceType": "Bundle", "type": "collection",
           "entry": [{"resource": {"resourceType": "Patient", "id": "pat-1"}}]}


def variables_library(form: Form) -> dict[str, Any]:
    """An ELM library that includes the form's Library and defines each root variable of the form
    as its served expression, ``"<Library>"."<function>"(%resource)``, means: the function called on
    the parameter ``%resource`` (as the CQL-to-ELM translator reads SDC's context variables)."""
    library = form.library
    statements = []
    for variable in form.variables:
        named = LIBRARY_STATEMENT.fullmatch(variable["valueExpression"]["expression"])
        assert named is not None and named[1] == library.name and named[3] == f"(%{RESOURCE})", variable
        call = c.function_ref(named[1], named[2], c.external(RESOURCE))
        statements.append({"name": variable["valueExpression"]["name"], "context": "Patient", "accessLevel": "Public",
                           "expression": call.elm})
    return {"library": {
        "identifier": {"id": f"{library.name}Variables", "version": library.resource["version"]},
        "schemaIdentifier": {"id": "urn:hl7-org:elm", "version": "r1"},
        "usings": {"def": [{"localIdentifier": "System", "uri": c.SYSTEM},
                           {"localIdentifier": "FHIR", "uri": c.FHIR, "version": "4.0.1"}]},
        "includes": {"def": [{"localIdentifier": library.name, "path": library.name,
                              "version": library.resource["version"]}]},
        "parameters": {"def": [{"name": f"%{RESOURCE}", "accessLevel": "Public",
                                "parameterTypeSpecifier": c.type_specifier("FHIR.QuestionnaireResponse")}]},
        "contexts": {"def": [{"name": "Patient"}]},
        "statements": {"def": statements},
    }}


def cql_variables(cases: list[tuple[Form, dict[str, Any]]],
                  elm: dict[str, dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """The root variables of each form on its QuestionnaireResponse, run by cql-execution in one
    node process (``elm``: the forms' Library ELM by key, default the generated one)."""
    libraries: dict[str, dict[str, Any]] = {}
    for form, _response in cases:
        key = f"{form.policy.id}|{form.policy.version}"
        libraries[key] = (elm or {}).get(key, form.library.elm)
        libraries[key + " variables"] = variables_library(form)
    return run_elm(libraries, [{"library": f"{form.policy.id}|{form.policy.version} variables", "bundle": PATIENT,
                                "parameters": {f"%{RESOURCE}": response}} for form, response in cases])


def test_the_answers_functions_read_codings_strings_groups_and_the_root_as_the_engine_normalizes() -> None:
    policy = next(p for p in RULES.policy_versions() if p.id == "medicare-opd-botulinum-toxin")
    form = FORMS.form(policy)
    response = {"resourceType": "QuestionnaireResponse", "status": "in-progress", "item": [
        {"linkId": "type_of_bill", "answer": [{"valueString": "0131"}]},
        {"linkId": "order", "item": [{"linkId": "other_codes", "answer": [{"valueString": "j0585"}]},
                                     {"linkId": "order_complete", "answer": [{"valueBoolean": True}]}]},
        {"linkId": "facts", "item": [
            {"linkId": "place_of_service", "answer": [{"valueCoding": {"system": POS, "code": "22"}}]},
            {"linkId": "diagnoses", "answer": [{"valueCoding": {"system": ICD10CM, "code": "g24.3"}},
                                               {"valueString": "R25. 2"}]}]}]}
    (found,) = cql_variables([(form, response)])
    assert found == {"placeOfService": ["22"], "typeOfBill": ["131"], "diagnoses": ["G243", "R252"],
                     "otherCodes": ["J0585"], "requestCodes": ["J0585"], "orderComplete": [True], "code": [],
                     "providerExemptions": []}


def _enablement(form: Form, facts: dict[str, Any], variables: dict[str, Any]) -> None:
    """Each documentation item with an enableWhenExpression is enabled, on these variables,
    exactly when the engine may owe it for ``facts``; and enabled too with every variable empty (a
    client that runs no CQL asks more, never less)."""
    try:
        line = parse_request(v1_body({"payer": form.policy.payer, **facts}), form.policy.effective).lines[0]
    except engine.RequestError:
        return  # facts no request can state (e.g. a birth date after the date of service)
    owed = {ref.id for ref, _policy, _when in run_policy(form.policy, line.facts).documentation}
    response = answers_response(facts)
    for group in form.questionnaire["item"]:
        for item in group.get("item", []):
            expressions = [e["valueExpression"]["expression"] for e in item.get("extension", []) if e["url"] == ENABLE]
            if item["linkId"].startswith(DOC_PREFIX) and expressions:
                enabled = fhirpath(response, expressions[0], variables)
                assert enabled == [item["linkId"][len(DOC_PREFIX):] in owed], (item["linkId"], facts, variables)
                if enabled == [True]:
                    assert fhirpath(response, expressions[0], {name: [] for name in variables}) == [True]


# Each example is one node process running a batch of cases; failures name their case, so they are
# not shrunk (shrinking would rerun node many times).
@settings(max_examples=8, deadline=None, phases=[Phase.explicit, Phase.reuse, Phase.generate],
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(answered(), min_size=20, max_size=20))
def test_documentation_items_are_enabled_exactly_when_the_engine_may_owe_them(
        batch: list[tuple[Form, dict[str, Any]]]) -> None:
    found = cql_variables([(form, answers_response(facts)) for form, facts in batch])
    for (form, facts), variables in zip(batch, found):
        _enablement(form, facts, variables)


@settings(max_examples=2, deadline=None, phases=[Phase.explicit, Phase.reuse, Phase.generate],
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(answered(), min_size=20, max_size=20))
def test_the_translated_cql_functions_read_the_answers_as_the_generated_elm(
        batch: list[tuple[Form, dict[str, Any]]]) -> None:
    """The answers functions' CQL text means what their ELM does: with the translator's ELM of the
    Library, every variable has the value the generated ELM gives it."""
    cases = [(form, answers_response(facts)) for form, facts in batch]
    reference = {key: found["elm"] for key, found in translated().items()}
    assert cql_variables(cases, reference) == cql_variables(cases)
