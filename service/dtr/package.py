"""DTR ``$questionnaire-package``: a Coverage and orders in, one package Bundle per form out.

The orders and the coverage are read exactly as a CRD call reads them (service/crd/requests.py),
the engine decides each service line, and every policy whose decision owes documentation or waits
for a fact contributes its adaptive form: a Bundle with the adaptive Questionnaire (no items), the
ValueSets the form uses and an adaptive QuestionnaireResponse for that line, pre-populated with what
the order already told and signed (service/dtr/signing.py). A form asked for by its canonical (the
standard form, or the adaptive one) comes with a plain draft response, which carries no signed
context and so is never answered by ``$next-question``. Every shape is the requested DTR version's
(service/dtr/versions.py).
"""
from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field
from typing import Any, Mapping

import engine
from service.crd.assertions import from_decision
from service.crd.envelope import read_envelope
from service.crd.payers import PayerMap
from service.crd.requests import ORDER_TYPES, HookCall, Line, Order, plan_problem, read_call, v1_request
from service.dtr import facts as f
from service.dtr.adaptive import Answers, page
from service.dtr.adaptive import envelope as ties
from service.dtr.catalogue import Catalogue, needs_form
from service.dtr.limits import too_many_forms
from service.dtr.questionnaire import DTR, Form
from service.dtr.signing import Keyring
from service.dtr.versions import DtrVersion, requested
from service.fhir.index import ResourceIndex
from service.fhir.outcome import FhirError

BUNDLE_PROFILE = f"{DTR}/DTR-QPackageBundle"
STANDARD_RESPONSE_PROFILE = f"{DTR}/dtr-questionnaireresponse"
#: DTR's order parameter takes these too; covreq reads no billing code from them, and says so
_ORDER_TYPES = ORDER_TYPES | {"Encounter", "SupplyRequest", "ImmunizationRecommendation"}


@dataclass
class Inputs:
    """The operation's input parameters."""

    coverage: dict[str, Any]
    orders: list[dict[str, Any]] = field(default_factory=list)
    questionnaires: list[str] = field(default_factory=list)
    context: str | None = None
    changed_since: dt.datetime | None = None
    referenced: list[dict[str, Any]] = field(default_factory=list)  # DTR 2.0.1: the orders' referenced resources


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
            inputs.changed_since = _instant(parameter, _where(index, ""))
        elif name == "referenced":
            if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
                raise FhirError(400, "referenced must carry a resource", _where(index, ".resource"))
            inputs.referenced.append(resource)
        else:
            raise FhirError(400, f"unknown parameter {name!r}; expected coverage, order, referenced, questionnaire, "
                                      "context or changedsince", _where(index, ".name"))
    if len(coverages) != 1:
        raise FhirError(400, f"exactly one coverage parameter is needed, not {len(coverages)}", "Parameters.parameter")
    inputs.coverage = coverages[0]
    if not (inputs.orders or inputs.questionnaires or inputs.context):  # DTR invariant dtr-1
        raise FhirError(400, "at least one of order, questionnaire and context is needed", "Parameters.parameter")
    return inputs


def _instant(parameter: Mapping[str, Any], where: str) -> dt.datetime:
    """The moment of ``changedsince``: a valueInstant (2.2) or valueDateTime (2.0.1); a dateTime
    without a time zone (or without a time) is read as UTC."""
    key = next((k for k in ("valueInstant", "valueDateTime") if k in parameter), "valueInstant")
    value = parameter.get(key)
    try:
        moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00")) if isinstance(value, str) else None
    except ValueError:
        moment = None
    if moment is not None and key == "valueDateTime" and moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    if moment is None or moment.tzinfo is None:
        raise FhirError(400, "changedsince must be a valueInstant with a time zone, or a valueDateTime",
                        f"{where}.{key}")
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


def package_resources(form: Form, adaptive: bool) -> list[dict[str, Any]]:
    """What a package holds of a form before its response: the Questionnaire first (dtrb-1), then
    the ValueSets it uses and the Library of its logic (CQL and ELM)."""
    return [form.adaptive if adaptive else form.questionnaire, *form.value_sets, form.library.resource]


def full_url(base: str, resource: Mapping[str, Any]) -> str:
    """``{base}/{type}/{id}`` of a resource with an id, else a fresh ``urn:uuid``."""
    if isinstance(resource.get("id"), str):
        return f"{base}/{resource['resourceType']}/{resource['id']}"
    return f"urn:uuid:{uuid.uuid4()}"


def _bundle(base: str, resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "meta": {"profile": [BUNDLE_PROFILE]}, "type": "collection",
            "entry": [{"fullUrl": full_url(base, r), "resource": r} for r in resources]}


def _issue(severity: str, code: str, text: str, expression: str = "") -> dict[str, Any]:
    issue: dict[str, Any] = {"severity": severity, "code": code, "diagnostics": text}
    if expression:
        issue["expression"] = [expression]
    return issue


@dataclass
class _Packages:
    """What the operation gathers, in one DTR version: the package Bundles, the canonicals they
    hold, and the issues for its outcome."""

    version: DtrVersion
    base: str
    bundles: list[dict[str, Any]] = field(default_factory=list)
    issues: list[dict[str, Any]] = field(default_factory=list)
    packaged: set[str] = field(default_factory=set)
    limit: int | None = None  # most package Bundles (service/dtr/limits.py)

    def add(self, form: Form, adaptive: bool, response: dict[str, Any] | None) -> None:
        """One package: the form (adaptive or standard), its ValueSets and ``response``. An adaptive
        package stands for the standard form too: asked for as well, it is not packaged again. 413
        past ``limit``."""
        if self.limit is not None and len(self.bundles) >= self.limit:
            raise too_many_forms(self.limit)
        self.packaged.update((form.adaptive_canonical, form.canonical) if adaptive else (form.canonical,))
        self.bundles.append(_bundle(self.base, [*package_resources(form, adaptive), *([response] if response else [])]))

    def output(self) -> dict[str, Any]:
        """The output Parameters."""
        parameters = [{"name": self.version.package_parameter, "resource": b} for b in self.bundles]
        if self.issues or not parameters:
            parameters.append({"name": self.version.outcome_parameter, "resource": {
                "resourceType": "OperationOutcome", "issue": self.issues or [
                    _issue("information", "informational", "no documentation or information is needed")]}})
        return {"resourceType": "Parameters", "parameter": parameters}


def package(body: Any, ruleset: engine.RuleSet, forms: Catalogue, payers: PayerMap, decided: list[dict[str, Any]],
            keys: Keyring, default: DtrVersion, today: dt.date | None = None,
            max_forms: int | None = None) -> dict[str, Any]:
    """The output Parameters of ``$questionnaire-package`` in the DTR version the input asks for
    (``default`` unless it names one), the decisions made appended to ``decided``, the adaptive
    responses signed with ``keys``; raises FhirError for a 4xx (413 at the first form past
    ``max_forms``)."""
    version = requested(body, default)
    inputs = read_inputs(body)
    found = _Packages(version, forms.base, limit=max_forms)
    if inputs.changed_since is not None and ruleset.loaded_at <= inputs.changed_since:
        found.issues.append(_issue("information", "informational",
                                   f"the rules have not changed since {inputs.changed_since.isoformat()}"))
        return found.output()
    patient = _patient(inputs.coverage)
    if inputs.orders:
        _package_orders(inputs, patient, ruleset, forms, payers, today or dt.date.today(), found, decided, keys)
    for canonical in inputs.questionnaires:
        asked = forms.by_canonical(canonical)
        adaptive = asked is not None and forms.questionnaire(canonical) is asked.adaptive
        if asked is None:
            found.issues.append(_issue("warning", "not-found", f"no Questionnaire {canonical} in this rule set"))
        elif (asked.adaptive_canonical if adaptive else asked.canonical) not in found.packaged:
            found.add(asked, adaptive, _blank_response(asked, adaptive, inputs, patient, version))
            if adaptive:
                found.issues.append(_issue("warning", "incomplete", f"{canonical} is adaptive: its questions follow "
                                           "from an order, so send the order (an order parameter) to answer it"))
    if inputs.context and not found.bundles:
        found.issues.append(_issue("warning", "not-supported", "covreq keeps no CRD context: send the orders "
                                                                "(order parameters) to get their questionnaires"))
    return found.output()


def _package_orders(inputs: Inputs, patient: str, ruleset: engine.RuleSet, forms: Catalogue, payers: PayerMap,
                    today: dt.date, found: _Packages, decided: list[dict[str, Any]], keys: Keyring) -> None:
    """Decide every line of the orders; package the adaptive forms of the decisions that need one.
    An order covreq reads no billing code from (an Encounter, a SupplyRequest ...) gets a warning."""
    readable = [o for o in inputs.orders if o["resourceType"] in ORDER_TYPES]
    found.issues += [_issue("warning", "not-supported", f"{o['resourceType']}/{o['id']} is not an order covreq reads "
                                                        "billing codes from") for o in inputs.orders if o not in readable]
    if not readable:
        return
    call = _hook_call(Inputs(inputs.coverage, readable), patient, payers, set(ruleset.payers()), today)
    coverage = call.coverage
    if coverage.problem:
        raise FhirError(422, coverage.problem[1], "Coverage")
    plans = ruleset.plans(coverage.payer.payer)
    unmapped = plan_problem(coverage, plans)
    if unmapped:  # a form for another plan's rules would ask the wrong questions
        raise FhirError(422, unmapped, "Coverage.class")
    read = {o.reference for o in call.orders}
    found.issues += [_issue("warning", "not-supported", f"{o['resourceType']}/{o['id']} is not an order covreq reads")
                     for o in readable if f"{o['resourceType']}/{o['id']}" not in read]
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
                                             patient, today, ruleset.digest, keys, found.version):
                found.add(form, True, response)
            if decision["pa_needed"] == "unknown":  # no form: covreq holds no rule for it (issue 22)
                found.issues.append(_issue("warning", "not-found", f"{line.system} {line.code} of "
                                           f"{order.reference}: {' '.join(decision['reasons'])}"))
            elif not needs_form(decision):
                found.issues.append(_issue("information", "informational",
                                           f"{line.system} {line.code} of {order.reference}: prior authorization "
                                           f"{decision['pa_needed']}, no documentation or information needed"))


def _forms_for(decision: dict[str, Any], line: Line, order: Order, request: dict[str, Any], index: int,
               forms: Catalogue, coverage: str, patient: str, today: dt.date,
               digest: str, keys: Keyring, version: DtrVersion) -> list[tuple[Form, dict[str, Any]]]:
    """The form of each policy behind a decision that needs one, with its adaptive response for this line."""
    if not needs_form(decision):
        return []
    purposes = from_decision(decision, line, supporting_hook=False).doc_purpose
    envelope = ties(version, [coverage], [order.reference], patient, purposes or ("withorder",))
    answers = Answers(known=_line_facts(request, index, today))
    found = []
    for summary in decision["policies"]:
        form = forms.find(summary)
        if form is not None:
            found.append((form, page(form, answers, decision, envelope, forms.base, digest, keys, version)))
    return found


def _blank_response(form: Form, adaptive: bool, inputs: Inputs, patient: str,
                    version: DtrVersion) -> dict[str, Any] | None:
    """A draft response to the whole form, for a questionnaire asked for by its canonical: not signed,
    so ``$next-question`` refuses it (it has no order facts to vouch for). None where the version's
    response profile wants answers (2.0.1 and 2.1: ``item`` 1..*) and its Bundle does not want a
    response: covreq fills no answer without an order."""
    if version.response_needs_items:
        return None
    envelope = ties(version, [f"Coverage/{inputs.coverage['id']}"],
                    [f"{o['resourceType']}/{o['id']}" for o in inputs.orders], patient, ("withorder",))
    return {"resourceType": "QuestionnaireResponse", "meta": {"profile": [STANDARD_RESPONSE_PROFILE]}, **envelope,
            "questionnaire": form.adaptive_canonical if adaptive else form.canonical, "status": "in-progress"}
