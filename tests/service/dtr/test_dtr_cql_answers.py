"""The forms' root variables: CQL calling the form Library's answers functions on the
QuestionnaireResponse being filled (``%resource``), compiled by the reference CQL-to-ELM translator
and run with the CQL reference engine. They read answers as the engine reads them, and the FHIRPath
enablement of documentation items, evaluated on them, agrees with the engine on which items may be
owed."""
from __future__ import annotations

from functools import lru_cache
from typing import Any

from cql_engine import run_elm, translate
from dtr_helpers import ICD10CM, POS, fhirpath
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from test_dtr_fhirpath import FORMS, RULES, answered, answers_response

import engine
from engine.evaluation.evaluate import run_policy
from engine.evaluation.request import parse_request
from service.dtr import cqlexpr as c
from service.dtr.cqlanswers import RESOURCE
from service.dtr.facts import v1_body
from service.dtr.questionnaire import DOC_PREFIX, Form

ENABLE = "http://hl7.org/fhir/uv/sdc/StructureDefinition/sdc-questionnaire-enableWhenExpression"
PATIENT = {"resourceType": "Bundle", "type": "collection",
           "entry": [{"resource": {"resourceType": "Patient", "id": "pat-1"}}]}


def variables_cql(form: Form) -> str:
    """A CQL library that includes the form's Library and defines each root variable of the form
    as its served expression (``"<Library>"."<function>"(%resource)``), SDC's ``%resource`` being
    the parameter of that name (as the CQL-to-ELM translator reads context variables)."""
    library, version = form.library.name, form.library.resource["version"]
    named, version = c.quoted(library), c.literal(version).text
    lines = [f"library {c.quoted(library + 'Variables')} version {version}", "using FHIR version '4.0.1'",
             f"include {named} version {version} called {named}",
             f"parameter {c.quoted('%' + RESOURCE)} FHIR.QuestionnaireResponse", "context Patient"]
    lines += [f"define {c.quoted(v['valueExpression']['name'])}: {v['valueExpression']['expression']}"
              for v in form.variables]
    return "\n".join(lines)


def _key(form: Form) -> str:
    return f"{form.policy.id}|{form.policy.version}"


@lru_cache(maxsize=1)
def served() -> dict[str, dict[str, Any]]:
    """Every bundled form's Library and its variables library (key ``<key> variables``), translated
    by the reference translator, each variables library against the Library it includes."""
    forms = [FORMS.form(policy) for policy in RULES.policy_versions()]
    return translate({**{_key(form): form.library.cql for form in forms},
                      **{_key(form) + " variables": variables_cql(form) for form in forms}})


def cql_variables(cases: list[tuple[Form, dict[str, Any]]], reference: bool = False) -> list[dict[str, Any]]:
    """The root variables of each form on its QuestionnaireResponse, run by cql-execution in one
    node process: the served expressions (translated) calling the Library's generated ELM, or with
    ``reference`` the translator's ELM of the Library's CQL."""
    libraries: dict[str, dict[str, Any]] = {}
    for form, _response in cases:
        libraries[_key(form)] = served()[_key(form)]["elm"] if reference else form.library.elm
        libraries[_key(form) + " variables"] = served()[_key(form) + " variables"]["elm"]
    return run_elm(libraries, [{"library": _key(form) + " variables", "bundle": PATIENT,
                                "parameters": {f"%{RESOURCE}": response}} for form, response in cases])


def test_every_served_variable_compiles_against_its_library_with_the_reference_translator() -> None:
    found = served()
    assert len(found) == 2 * len(RULES.policy_versions())
    assert {key: result["errors"] for key, result in found.items()} == {key: [] for key in found}


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
    assert cql_variables(cases, reference=True) == cql_variables(cases)
