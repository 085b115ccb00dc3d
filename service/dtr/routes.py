"""The FHIR R4 endpoints under ``/fhir``: capabilities, Questionnaire resolution and the DTR / SDC
operations. Errors are OperationOutcome resources with a 4xx status."""
from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

import engine

from service.dtr.adaptive import next_question
from service.dtr.catalogue import PREFIX, fhir_base, forms_of
from service.pas.subscriptions import CAPABILITY as subscription_capability
from service.dtr.limits import DtrLimits, off_loop
from service.dtr.package import package
from service.dtr.security import security_of
from service.dtr import terminology
from service.dtr.feedback import log_errors
from service.dtr.terminology import searchset
from service.dtr.versions import PAYER_CAPABILITIES, VERSIONS
from service.pas.routes import OPERATIONS as PAS_OPERATIONS
from service.fhir.outcome import FhirError, operation_outcome
from service.metrics import answered
from service.responses import UNAUDITED, json_response, rendered_response
from service.smart.security import smart_security
from service.v1 import parse_json

METADATA = PREFIX + "/metadata"
FHIR_JSON = {"Content-Type": "application/fhir+json"}
OPERATIONS = {
    "questionnaire-package": "http://hl7.org/fhir/us/davinci-dtr/OperationDefinition/questionnaire-package",
    "next-question": "http://hl7.org/fhir/uv/sdc/OperationDefinition/Questionnaire-next-question",
    "log-questionnaire-errors": "http://hl7.org/fhir/us/davinci-dtr/OperationDefinition/log-questionnaire-errors",
}
EXPAND = "http://hl7.org/fhir/OperationDefinition/ValueSet-expand"
router = APIRouter(tags=["FHIR: Da Vinci DTR"])


def owns(path: str) -> bool:
    """Whether a path belongs to the FHIR endpoints (errors there are OperationOutcomes)."""
    return path == PREFIX or path.startswith(PREFIX + "/")


def _fhir(body: Any, digest: str, status: int = 200) -> JSONResponse:
    return json_response(body, digest, status, headers=FHIR_JSON)


def capability_statement(base: str, digest: str, loaded_at: dt.datetime, security: dict[str, Any]) -> dict[str, Any]:
    """What the FHIR endpoints offer: the DTR payer service of every version served
    (service/dtr/versions.py), secured as ``security`` says (service/dtr/security.py)."""
    return {
        "resourceType": "CapabilityStatement", "status": "active", "date": loaded_at.isoformat(timespec="seconds"),
        "publisher": "covreq", "kind": "instance", "fhirVersion": "4.0.1", "format": ["json"],
        "instantiates": [f"{PAYER_CAPABILITIES}|{v.ig_version}" for v in VERSIONS.values()],
        "software": {"name": "covreq", "version": digest},
        "implementation": {"description": "covreq: documentation requirements generated from the rules", "url": base},
        "implementationGuide": ["http://hl7.org/fhir/us/davinci-dtr/ImplementationGuide/hl7.fhir.us.davinci-dtr",
                                "http://hl7.org/fhir/us/davinci-pas/ImplementationGuide/hl7.fhir.us.davinci-pas",
                                "http://hl7.org/fhir/uv/sdc/ImplementationGuide/hl7.fhir.uv.sdc"],
        "rest": [{"mode": "server", "security": security, "resource": [{
            "type": "Questionnaire", "interaction": [{"code": "read"}, {"code": "search-type"}],
            "searchParam": [{"name": "url", "type": "uri"}, {"name": "version", "type": "token"}],
            "operation": [{"name": name, "definition": url} for name, url in OPERATIONS.items()],
        }, {
            "type": "ValueSet", "interaction": [{"code": "read"}, {"code": "search-type"}],
            "searchParam": [{"name": "url", "type": "uri"}, {"name": "version", "type": "token"}],
            "operation": [{"name": "expand", "definition": EXPAND}],
        }, {
            "type": "Library", "interaction": [{"code": "read"}, {"code": "search-type"}],
            "searchParam": [{"name": "url", "type": "uri"}, {"name": "version", "type": "token"}],
        }, {
            "type": "Claim",  # Da Vinci PAS (service/pas/routes.py)
            "operation": [{"name": name, "definition": url} for name, url in PAS_OPERATIONS.items()],
        }]}],
    }


@router.get(METADATA, summary="FHIR CapabilityStatement of the /fhir endpoints")
def metadata(request: Request) -> JSONResponse:
    """The CapabilityStatement."""
    ruleset = request.app.state.holder.current
    statement = capability_statement(fhir_base(request), ruleset.digest, ruleset.loaded_at,
                                     security_of(request.app.state.settings))
    smart_security(statement["rest"][0], request)
    statement["rest"][0]["resource"].append(subscription_capability)  # Da Vinci PAS (service/pas/)
    return _fhir(statement, ruleset.digest)


@router.get(PREFIX + "/Questionnaire", summary="Search the generated Questionnaires by canonical url")
def search(request: Request, url: str | None = None, version: str | None = None) -> JSONResponse:
    """A searchset Bundle of the forms whose url (and version) match; every policy's current form
    without a url."""
    forms = forms_of(request)
    return _fhir(searchset(forms.base, forms.search(url, version)), request.app.state.holder.current.digest)


@router.get(PREFIX + "/Questionnaire/{resource_id}", summary="Read a generated Questionnaire")
def read(resource_id: str, request: Request) -> JSONResponse:
    """One form by id (``<policy id>.<version>``, or a policy id for its current version)."""
    digest = request.app.state.holder.current.digest
    found = forms_of(request).by_id(resource_id)
    if found is None:
        return operation_outcome(404, f"no Questionnaire {resource_id!r}", digest, "id")
    return _fhir(found, digest)


async def _body(request: Request) -> Any:
    """The JSON body, parsed in a DTR worker thread (a body of a megabyte takes milliseconds)."""
    try:
        return await off_loop(parse_json, await request.body())
    except ValueError as err:
        raise FhirError(400, f"malformed JSON: {err}") from err


@router.post(PREFIX + "/Questionnaire/$questionnaire-package", summary="DTR: the forms an order needs")
async def questionnaire_package(request: Request) -> Response:
    """Parameters with coverage and order(s) in; Parameters with one packagebundle per form out."""
    ruleset = request.app.state.holder.current
    decided: list[dict[str, Any]] = []
    try:
        body = await _body(request)
        limits = _limits(request)
        limits.check_inputs(body)
        result = await off_loop(package, body, ruleset, forms_of(request), request.app.state.payers, decided,
                                request.app.state.dtr_keys, request.app.state.dtr_version, max_forms=limits.forms)
    except FhirError as err:
        return _refused(request, ruleset, "questionnaire-package", err)
    return await _answered(request, ruleset, "questionnaire-package", decided, result)


@router.post(PREFIX + "/Questionnaire/$next-question", summary="SDC adaptive form: the next questions")
async def next_question_operation(request: Request) -> Response:
    """Parameters with ``questionnaire-response`` (or the QuestionnaireResponse itself) in; the
    QuestionnaireResponse out (a single ``return`` resource is returned as itself, FHIR R4
    operations): with the next questions, or completed with the decision."""
    ruleset = request.app.state.holder.current
    decided: list[dict[str, Any]] = []
    try:
        body = await _body(request)
        response = body
        if isinstance(body, dict) and body.get("resourceType") == "Parameters":
            given = [p.get("resource") for p in body.get("parameter") or []
                     if isinstance(p, dict) and p.get("name") == "questionnaire-response"]
            if len(given) != 1:
                raise FhirError(400, "expected one questionnaire-response parameter", "Parameters.parameter")
            response = given[0]
        result = await off_loop(next_question, response, forms_of(request), ruleset, request.app.state.dtr_keys,
                                decided)
    except FhirError as err:
        return _refused(request, ruleset, "next-question", err)
    return await _answered(request, ruleset, "next-question", decided, result)


def _refused(request: Request, ruleset: engine.RuleSet, operation: str, err: FhirError) -> JSONResponse:
    """The OperationOutcome of a refused DTR operation, audited."""
    request.app.state.audit.dtr(request, ruleset.digest, err.status, operation, expression=err.expression)
    return operation_outcome(err.status, err.message, ruleset.digest, err.expression)


def _limits(request: Request) -> DtrLimits:
    return DtrLimits.of(request.app.state.settings)


async def _answered(request: Request, ruleset: engine.RuleSet, operation: str, decided: list[dict[str, Any]],
                    result: dict[str, Any]) -> Response:
    """``result`` of a DTR operation once its audit record is written (503 when it cannot be), its
    ``decided`` lines counted; 413 when it is larger than the limits allow."""
    try:
        rendered = await off_loop(_limits(request).check_answer, result)
    except FhirError as err:
        return _refused(request, ruleset, operation, err)
    audit = request.app.state.audit
    if audit.withheld(audit.dtr(request, ruleset.digest, 200, operation, decided)):
        return operation_outcome(503, UNAUDITED, ruleset.digest)
    answered(request, "dtr", (d["pa_needed"] for d in decided))
    return rendered_response(rendered, ruleset.digest, headers=FHIR_JSON)


@router.post(PREFIX + "/Questionnaire/$log-questionnaire-errors", summary="DTR: report errors of a form")
async def log_questionnaire_errors(request: Request) -> JSONResponse:
    """Parameters with ``questionnaire`` and ``operationOutcome`` in; an informational OperationOutcome out."""
    digest = request.app.state.holder.current.digest
    try:
        return _fhir(log_errors(await _body(request)), digest)
    except FhirError as err:
        return operation_outcome(err.status, err.message, digest, err.expression)


@router.get(PREFIX + "/ValueSet", summary="Search the forms' ValueSets by canonical url")
def value_set_search(request: Request, url: str | None = None, version: str | None = None) -> JSONResponse:
    """A searchset Bundle of the ValueSets whose url (and version) match."""
    forms = forms_of(request)
    return _fhir(searchset(forms.base, terminology.search(forms, url, version)),
                 request.app.state.holder.current.digest)


@router.get(PREFIX + "/ValueSet/$expand", summary="Expand a form's ValueSet named by url")
def value_set_expand(request: Request) -> JSONResponse:
    """The ValueSet ``url`` (``valueSetVersion``) names, expanded."""
    return _expanded(request, dict(request.query_params))


@router.post(PREFIX + "/ValueSet/$expand", summary="Expand a form's ValueSet named in Parameters")
async def value_set_expand_post(request: Request) -> JSONResponse:
    """The ValueSet the input Parameters' ``url`` names, expanded."""
    try:
        query = terminology.expand_inputs(await _body(request))
    except FhirError as err:
        return operation_outcome(err.status, err.message, request.app.state.holder.current.digest, err.expression)
    return _expanded(request, query)


@router.get(PREFIX + "/ValueSet/{resource_id}/$expand", summary="Expand a form's ValueSet")
def value_set_expand_instance(resource_id: str, request: Request) -> JSONResponse:
    """The ValueSet with ``resource_id``, expanded."""
    return _expanded(request, dict(request.query_params), resource_id)


@router.get(PREFIX + "/ValueSet/{resource_id}", summary="Read a form's ValueSet")
def value_set_read(resource_id: str, request: Request) -> JSONResponse:
    """One ValueSet by id."""
    digest = request.app.state.holder.current.digest
    found = terminology.by_id(forms_of(request), resource_id)
    if found is None:
        return operation_outcome(404, f"no ValueSet {resource_id[:64]!r}", digest, "id")
    return _fhir(found, digest)


def _expanded(request: Request, query: dict[str, Any], resource_id: str | None = None) -> JSONResponse:
    digest = request.app.state.holder.current.digest
    try:
        return _fhir(terminology.expand(forms_of(request), query, resource_id), digest)
    except FhirError as err:
        return operation_outcome(err.status, err.message, digest, err.expression)
