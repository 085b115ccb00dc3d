"""DTR ``$questionnaire-package``: a Coverage and orders in, one package Bundle per form out.

The orders and the coverage are read exactly as a CRD call reads them (service/crd/requests.py),
the engine decides each service line, and every policy whose decision owes documentation or waits
for a fact contributes its form: a Bundle with the Questionnaire, the ValueSets it uses and an
adaptive QuestionnaireResponse for that line, pre-populated with what the order already told and
signed (service/dtr/signing.py). A form asked for by its canonical comes with a plain draft
response, which carries no signed context and so is never answered by ``$next-question``.
"""
from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field
from typing import Any, Mapping

import engine
from service.crd.assertions import from_decision
from service.crd.coverage_information import CRD_TEMP
from service.crd.envelope import read_envelope
from service.crd.payers import PayerMap
from service.crd.requests import ORDER_TYPES, HookCall, Line, Order, plan_problem, read_call, v1_request
from service.dtr import facts as f
from service.dtr.adaptive import INTENDED_USE, QR_CONTEXT, QR_COVERAGE, Answers, page
from service.dtr.catalogue import Catalogue, needs_form
from service.dtr.limits import too_many_forms
from service.dtr.questionnaire import DTR, Form
from service.dtr.signing import Keyring
from service.fhir.index import ResourceIndex
from service.fhir.outcome import FhirError

BUNDLE_PROFILE = f"{DTR}/DTR-QPackageBundle"
_ORDER_TYPES = ORDER_TYPES | {"Encounter", "SupplyRequest"}  # DTR's order parameter also takes these


@dataclass
class Inputs:
    """The operation's input parameters."""

    coverage: dict[str, Any]
    orders: list[dict[str, Any]] = field(default_factory=list)
    questionnaires: list[str] = field(default_factory=list)
    context: str | None = None
    changed_since: dt.datetime | None = None


def _where(index: int, rest: str = "") -> str:
    return f"Parameters.parameter[{index}]{rest}"


def read_inputs(body: Any) -> Inputs:
    """Check and read the input Parameters; raises FhirError (400) naming the bad parameter."""
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
        raise FhirError(400, "the body must be a FHIR Parameters resource", "Parameters")
    parameters = body.get("parameter")
    if not isinstance(parameters, list):
        raise FhirError(400, "Parameters.parameter must be a list", "Parameters.parameter")
    coverages, inputs = [], Inputs({})
    for index, parameter in enumerate(parameters):
        name = parameter.get("name") if isinstance(parameter, dict) else None
        resource = parameter.get("resource") if isinstance(parameter, dict) else None
        if name == "coverage":
            if not isinstance(resource, dict) or resource.get("resourceType") != "Coverage":
                raise FhirError(400, "coverage must carry a Coverage resource", _where(index, ".resource"))
            if not isinstance(resource.get("id"), str):
                raise FhirError(400, "the Coverage needs an id (the forms refer to it)", _where(index, ".resource.id"))
            coverages.append(resource)
        elif name == "order":
            if not isinstance(resource, dict) or str(resource.get("resourceType")) not in _ORDER_TYPES:
                raise FhirError(400, f"order must carry one of {', '.join(sorted(_ORDER_TYPES))}",
                                     _where(index, ".resource"))
            if not isinstance(resource.get("id"), str):
                raise FhirError(400, "every order needs an id (the forms refer to it)", _where(index, ".resource.id"))
            inputs.orders.append(resource)
        elif name == "questionnaire":
            canonical = parameter.get("valueCanonical")
            if not isinstance(canonical, str) or not canonical:
                raise FhirError(400, "questionnaire must carry a valueCanonical", _where(index, ".valueCanonical"))
            inputs.questionnaires.append(canonical)
        elif name == "context":
            if not isinstance(parameter.get("valueString"), str):
                raise FhirError(400, "context must carry a valueString", _where(index, ".valueString"))
            inputs.context = parameter["valueString"]
        elif name == "changedsince":
            inputs.changed_since = _instant(parameter.get("valueInstant"), _where(index, ".valueInstant"))
        else:
            raise FhirError(400, f"unknown parameter {name!r}; expected coverage, order, questionnaire, "
                                      "context or changedsince", _where(index, ".name"))
    if len(coverages) != 1:
        raise FhirError(400, f"exactly one coverage parameter is needed, not {len(coverages)}", "Parameters.parameter")
    inputs.coverage = coverages[0]
    if not (inputs.orders or inputs.questionnaires or inputs.context):  # DTR invariant dtr-1
        raise FhirError(400, "at least one of order, questionnaire and context is needed", "Parameters.parameter")
    return inputs


def _instant(value: Any, where: str) -> dt.datetime:
    try:
        moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00")) if isinstance(value, str) else None
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise FhirError(400, "changedsince must be a valueInstant with a time zone", where)
    return moment


def _patient(coverage: Mapping[str, Any]) -> str:
    reference = coverage.get("beneficiary", {}).get("reference") if isinstance(coverage.get("beneficiary"), dict) else None
    if not isinstance(reference, str) or not reference.startswith("Patient/") or len(reference) <= len("Patient/"):
        raise FhirError(400, "the Coverage needs a beneficiary reference 'Patient/<id>'",
                             "Coverage.beneficiary.reference")
    return reference


def _hook_call(inputs: Inputs, patient: str, payers: PayerMap, served: set[str], today: dt.date) -> HookCall:
    """The orders and coverage read as CRD reads a hook call."""
    body = {"hook": "order-sign", "hookInstance": f"dtr-{uuid.uuid4()}",
            "context": {"patientId": patient.split("/", 1)[1],
                        "draftOrders": {"resourceType": "Bundle", "type": "collection",
                                        "entry": [{"resource": o} for o in inputs.orders]}},
            "prefetch": {"coverage": {"resourceType": "Bundle", "type": "searchset",
                                      "entry": [{"resource": inputs.coverage}]}}}
    try:
        envelope = read_envelope(body, "order-sign")
        envelope.require_valid_orders()
        return read_call(envelope, ResourceIndex(envelope.prefetch.values()), payers, served, today,
                         coverage_known=True)
    except FhirError as err:
        raise FhirError(err.status, err.message, _parameter_of(err.expression)) from err


def _parameter_of(expression: str) -> str:
    """The input parameter a CRD reading problem is about (named by where a hook call holds it)."""
    for prefix, name in (("prefetch.coverage", "coverage"), ("Coverage", "coverage"), ("context.draftOrders", "order")):
        if expression.startswith(prefix):
            return f"Parameters.parameter.where(name = '{name}')"
    return "Parameters"


def _line_facts(body: Mapping[str, Any], index: int, today: dt.date) -> dict[str, Any]:
    """The facts one line of a v1 request states, for the server's answers."""
    services = body["services"]
    known = f.flat_facts({**body, "services": [services[index]]})
    known.pop("payer", None)
    known.setdefault("date_of_service", today.isoformat())
    others = [s["code"] for i, s in enumerate(services) if i != index]
    if others:
        known["other_codes"] = others
    return known


def _bundle(form: Form, response: dict[str, Any]) -> dict[str, Any]:
    entries = [{"fullUrl": f"{form.questionnaire['url']}", "resource": form.questionnaire}]
    entries += [{"fullUrl": vs["url"], "resource": vs} for vs in form.value_sets]
    entries.append({"fullUrl": form.library.full_url, "resource": form.library.resource})
    entries.append({"fullUrl": f"urn:uuid:{uuid.uuid4()}", "resource": response})
    return {"resourceType": "Bundle", "meta": {"profile": [BUNDLE_PROFILE]}, "type": "collection", "entry": entries}


def _envelope(coverage: str, patient: str, orders: list[str], purposes: tuple[str, ...]) -> dict[str, Any]:
    extensions = [{"url": QR_COVERAGE, "valueReference": {"reference": coverage}}]
    extensions += [{"url": QR_CONTEXT, "valueReference": {"reference": o}} for o in orders]
    extensions += [{"url": INTENDED_USE, "valueCodeableConcept": {"coding": [{"system": CRD_TEMP, "code": p}]}}
                   for p in purposes or ("withorder",)]
    return {"extension": extensions, "subject": {"reference": patient}}


def _issue(severity: str, code: str, text: str, expression: str = "") -> dict[str, Any]:
    issue: dict[str, Any] = {"severity": severity, "code": code, "diagnostics": text}
    if expression:
        issue["expression"] = [expression]
    return issue


@dataclass
class _Packages:
    """What the operation gathers: the package Bundles, the canonicals they hold, and the issues
    for its outcome."""

    bundles: list[dict[str, Any]] = field(default_factory=list)
    issues: list[dict[str, Any]] = field(default_factory=list)
    packaged: set[str] = field(default_factory=set)
    limit: int | None = None  # most package Bundles (service/dtr/limits.py)

    def add(self, form: Form, response: dict[str, Any]) -> None:
        """One package: the form, its ValueSets and ``response``; 413 past ``limit``."""
        if self.limit is not None and len(self.bundles) >= self.limit:
            raise too_many_forms(self.limit)
        self.packaged.add(form.canonical)
        self.bundles.append(_bundle(form, response))


def package(body: Any, ruleset: engine.RuleSet, forms: Catalogue, payers: PayerMap, decided: list[dict[str, Any]],
            keys: Keyring, today: dt.date | None = None, max_forms: int | None = None) -> dict[str, Any]:
    """The output Parameters of ``$questionnaire-package``, the decisions made appended to
    ``decided``, the adaptive responses signed with ``keys``; raises FhirError for a 4xx (413 at
    the first form past ``max_forms``)."""
    inputs = read_inputs(body)
    if inputs.changed_since is not None and ruleset.loaded_at <= inputs.changed_since:
        return {"resourceType": "Parameters", "parameter": [{"name": "outcome", "resource": {
            "resourceType": "OperationOutcome", "issue": [_issue(
                "information", "informational",
                f"the rules have not changed since {inputs.changed_since.isoformat()}")]}}]}
    patient = _patient(inputs.coverage)
    found = _Packages(limit=max_forms)
    if inputs.orders:
        _package_orders(inputs, patient, ruleset, forms, payers, today or dt.date.today(), found, decided, keys)
    for canonical in inputs.questionnaires:
        asked = forms.by_canonical(canonical)
        if asked is None:
            found.issues.append(_issue("warning", "not-found", f"no Questionnaire {canonical} in this rule set"))
        elif asked.canonical not in found.packaged:
            found.add(asked, _blank_response(asked, inputs, patient))
    if inputs.context and not found.bundles:
        found.issues.append(_issue("warning", "not-supported", "covreq keeps no CRD context: send the orders "
                                                                "(order parameters) to get their questionnaires"))
    parameters = [{"name": "packagebundle", "resource": b} for b in found.bundles]
    if found.issues or not parameters:
        parameters.append({"name": "outcome", "resource": {"resourceType": "OperationOutcome", "issue": found.issues or [
            _issue("information", "informational", "no documentation or information is needed")]}})
    return {"resourceType": "Parameters", "parameter": parameters}


def _package_orders(inputs: Inputs, patient: str, ruleset: engine.RuleSet, forms: Catalogue, payers: PayerMap,
                    today: dt.date, found: _Packages, decided: list[dict[str, Any]], keys: Keyring) -> None:
    """Decide every line of the orders; package the forms of the decisions that need one."""
    call = _hook_call(inputs, patient, payers, set(ruleset.payers()), today)
    coverage = call.coverage
    if coverage.problem:
        raise FhirError(422, coverage.problem[1], "Coverage")
    plans = ruleset.plans(coverage.payer.payer)
    unmapped = plan_problem(coverage, plans)
    if unmapped:  # a form for another plan's rules would ask the wrong questions
        raise FhirError(422, unmapped, "Coverage.class")
    read = {o.reference for o in call.orders}
    found.issues += [_issue("warning", "not-supported", f"{o['resourceType']}/{o['id']} is not an order covreq reads")
                     for o in inputs.orders if f"{o['resourceType']}/{o['id']}" not in read]
    for order in call.orders:
        if not order.lines:
            found.issues.append(_issue("warning", "incomplete", f"{order.reference} carries no CPT or HCPCS code"))
            continue
        request = v1_request(call, order, plans)
        try:
            decisions = ruleset.evaluate(request)["decisions"]
        except engine.RequestError as err:
            raise FhirError(422, f"{order.reference} gives an invalid {err.location}: {err.message}",
                                 order.reference) from err
        decided += decisions
        for index, (decision, line) in enumerate(zip(decisions, order.lines)):
            for form, response in _forms_for(decision, line, order, request, index, forms, coverage.reference,
                                             patient, today, ruleset.digest, keys):
                found.add(form, response)
            if decision["pa_needed"] == "unknown":  # no form: covreq holds no rule for it (issue 22)
                found.issues.append(_issue("warning", "not-found", f"{line.system} {line.code} of "
                                           f"{order.reference}: {' '.join(decision['reasons'])}"))
            elif not needs_form(decision):
                found.issues.append(_issue("information", "informational",
                                           f"{line.system} {line.code} of {order.reference}: prior authorization "
                                           f"{decision['pa_needed']}, no documentation or information needed"))


def _forms_for(decision: dict[str, Any], line: Line, order: Order, request: dict[str, Any], index: int,
               forms: Catalogue, coverage: str, patient: str, today: dt.date,
               digest: str, keys: Keyring) -> list[tuple[Form, dict[str, Any]]]:
    """The form of each policy behind a decision that needs one, with its response for this line."""
    if not needs_form(decision):
        return []
    purposes = from_decision(decision, line, supporting_hook=False).doc_purpose
    envelope = _envelope(coverage, patient, [order.reference], purposes)
    answers = Answers(known=_line_facts(request, index, today))
    found = []
    for summary in decision["policies"]:
        form = forms.find(summary)
        if form is not None:
            found.append((form, page(form, answers, decision, envelope, forms.base, digest, keys)))
    return found


def _blank_response(form: Form, inputs: Inputs, patient: str) -> dict[str, Any]:
    """A draft response to the whole form, for a questionnaire asked for by its canonical: not
    adaptive and not signed, so ``$next-question`` refuses it (it has no order facts to vouch for)."""
    envelope = _envelope(f"Coverage/{inputs.coverage['id']}", patient,
                         [f"{o['resourceType']}/{o['id']}" for o in inputs.orders], ())
    return {"resourceType": "QuestionnaireResponse", **envelope, "questionnaire": form.canonical,
            "status": "in-progress"}
