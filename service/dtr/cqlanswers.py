"""The form's answers in CQL: per fact a root ``variable`` holds, a function of the form's Library
that reads that fact's answers from the QuestionnaireResponse being filled, normalized as the
engine normalizes a request. The variable calls it on SDC's ``%resource`` (``text/cql``:
``"<Library>"."Answers: <define>"(%resource)``), so the logic the enablement expressions read is
CQL, in the Library, as DTR asks of expressions that control a form's flow.

Answers are read from items at the root of the response or in one of its groups: the forms'
shape (service/dtr/questionnaire.py).
"""
from __future__ import annotations

from typing import Any, Iterable

from engine.language.facts import BOOL, CODE, DATE, ICD, NUMBER
from service.dtr import cqlexpr as c
from service.dtr.cql import Function, Logic, define_name, normal_code
from service.dtr.cqlexpr import Cql
from service.dtr.facts import ITEM_SPECS
from service.dtr.fhirpath import variable_name

#: The operand of every answers function, and its type.
RESPONSE = ("response", "FHIR.QuestionnaireResponse")
#: The function every answers function calls: the answer values of the items with a link id.
VALUES = "Answer values"
_LINK_ID = ("link id", "String")
#: The SDC context variable that is the QuestionnaireResponse being filled.
RESOURCE = "resource"
_ITEM, _ANSWER = "FHIR.QuestionnaireResponse.Item", "FHIR.QuestionnaireResponse.Item.Answer"
#: What the engine does to a given text before comparing it, beyond codes (upper, no dots).
_UPPER = {"state", "modifiers"}
_LOWER = {"patient.sex", "provider.type"}


def function_name(fact: str) -> str:
    """The function that reads a fact's answers (``place_of_service`` -> ``Answers: Place of service``)."""
    return f"Answers: {define_name(fact)}"


def _answer_values() -> Function:
    """The function that reads the answer values (FHIR choices) of the items with a link id, at
    the root of a response or in one of its groups."""
    roots = c.elements(c.prop(c.operand(RESPONSE[0]), "item"), _ITEM)
    nested = c.flatten(c.query(roots, "G", None, c.elements(c.prop(c.alias("G"), "item"), _ITEM)))
    items = c.flatten(c.list_of([roots, nested], f"List<{_ITEM}>"))
    linked = c.binary("=", c.prop(c.alias("I"), "linkId.value"), c.operand(_LINK_ID[0]))
    answers = c.query(c.elements(c.prop(c.alias("I"), "answer"), _ANSWER), "A", None, c.prop(c.alias("A"), "value"))
    return Function(VALUES, (RESPONSE, _LINK_ID), c.flatten(c.query(items, "I", linked, answers)))


def _value(fact: str, value: Cql) -> Cql:
    """One answer as the fact's value: codings read as codes, normalized as the engine does."""
    spec = ITEM_SPECS[fact]
    if spec.type == NUMBER:
        return c.coalesce(c.prop(c.as_fhir(value, "decimal"), "value"),
                          c.call("ToDecimal", c.prop(c.as_fhir(value, "integer"), "value")))
    if spec.type in (DATE, BOOL):
        return c.prop(c.as_fhir(value, "date" if spec.type == DATE else "boolean"), "value")
    text = c.coalesce(c.prop(c.as_fhir(value, "Coding"), "code.value"), c.prop(c.as_fhir(value, "string"), "value"))
    if spec.type in (ICD, CODE):
        return normal_code(text)
    if fact == "type_of_bill":
        return c.replace_matches(c.call("Upper", text), "^0+", "")
    if fact in _UPPER:
        return c.call("Upper", text)
    if fact in _LOWER:
        return c.call("Lower", text)
    return text


def answers_function(fact: str) -> Function:
    """The function that reads a fact's answers; ``request_codes`` are the form's ``other_codes``."""
    item = "other_codes" if fact == "request_codes" else fact
    values = c.local_function_ref(VALUES, c.operand(RESPONSE[0]), c.literal(item))
    return Function(function_name(fact), (RESPONSE,), c.query(values, "V", None, _value(fact, c.alias("V"))))


def add_answers_functions(logic: Logic, facts: Iterable[str]) -> None:
    """Add the answers function of each of ``facts`` (and the one they call) to a library's logic."""
    for function in (_answer_values(), *map(answers_function, facts)):
        logic.functions[function.name] = function


def variable_call(library: str, fact: str) -> Cql:
    """A variable's expression: the fact's answers function of ``library`` on ``%resource``."""
    return c.function_ref(library, function_name(fact), c.external(RESOURCE))


def variable_expression(library: str, fact: str) -> dict[str, Any]:
    """The ``valueExpression`` of a fact's root variable (named as the enablement FHIRPath reads it)."""
    return {"name": variable_name(fact), "language": "text/cql", "expression": variable_call(library, fact).text}
