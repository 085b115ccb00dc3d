"""One FHIR R4 Questionnaire per policy version, generated from its rules, with its ValueSets.

The canonical is ``{base}/Questionnaire/{policy id}`` with the policy's version, so it is the same
for every load of the same rules. Items (linkIds are stable too):

- group ``order``: the billing code, the date of service and the plan (unless the rules ask it), and
  the order's other codes when the rules read them, filled by the server;
- group ``facts``: one question per fact the policy's conditions read (answer options from the
  values they test it against, an SDC ``initialExpression`` in CQL where the EHR's data can tell:
  the fact's define in the form's Library, ``"<library>"."<define>"``);
- group ``documentation``: one item per documentation item (``documentation.<id>``), enabled by
  an SDC ``enableWhenExpression`` only while one of the rules that list it may still decide.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Mapping

from engine.language.ast import facts_of
from engine.language.facts import FACTS
from engine.evaluation.needs import Needs, needs_of
from engine.policy import Policy
from service.dtr import facts as f
from service.dtr.cql import define_name, library_name
from service.dtr.cqlanswers import variable_expression
from service.dtr.fhirpath import may_hold, variable_facts
from service.dtr.library import CQF_LIBRARY, Library, build_library, cql_expression, library_url

SDC = "http://hl7.org/fhir/uv/sdc/StructureDefinition"
DTR = "http://hl7.org/fhir/us/davinci-dtr/StructureDefinition"
EXT = "http://hl7.org/fhir/StructureDefinition"
STANDARD_PROFILE = f"{DTR}/dtr-std-questionnaire"
ADAPTIVE_PROFILE = f"{DTR}/dtr-questionnaire-adapt"
SEARCH_PROFILE = f"{DTR}/dtr-questionnaire-adapt-search"
QUESTIONNAIRE_ADAPTIVE = f"{SDC}/sdc-questionnaire-questionnaireAdaptive"
#: What the canonical and id of a policy's adaptive form end with (the standard form's plus this).
ADAPTIVE_SUFFIX = "-adaptive"
LAUNCH_CONTEXT = "http://hl7.org/fhir/uv/sdc/CodeSystem/launchContext"
LAUNCH_ORDER_TYPES = ["ServiceRequest", "DeviceRequest", "MedicationRequest", "NutritionOrder", "VisionPrescription",
               "Appointment", "Encounter"]
#: Facts every form carries in its ``order`` group (and the plan, unless the rules ask it).
ORDER_FACTS = ("code", "date_of_service")
DOC_PREFIX = "documentation."
#: Item types per documentation kind: records and images are attached, administrative items attested.
DOC_TYPES = {"clinical": "attachment", "patient": "attachment", "admin": "boolean"}
_ID = re.compile(r"[^A-Za-z0-9\-.]")


@dataclass(frozen=True)
class Form:
    """The generated Questionnaire of one policy version, with the ValueSets its items use."""

    policy: Policy
    questionnaire: dict[str, Any]  # the standard form (dtr-std-questionnaire): every item
    value_sets: tuple[dict[str, Any], ...]
    adaptive: dict[str, Any]  # the adaptive form (dtr-questionnaire-adapt-search): no items

    @property
    def canonical(self) -> str:
        """``url|version`` of the standard form."""
        return f"{self.questionnaire['url']}|{self.questionnaire['version']}"

    @property
    def adaptive_canonical(self) -> str:
        """``url|version`` of the adaptive form."""
        return f"{self.adaptive['url']}|{self.adaptive['version']}"

    @property
    def variables(self) -> list[dict[str, Any]]:
        """The form's root variables: one per fact its conditions read, its answers (CQL)."""
        return [e for e in self.questionnaire["extension"] if e["url"] == f"{EXT}/variable"]

    @cached_property
    def library(self) -> Library:
        """The form's CQL Library (service/dtr/library.py), built when first asked for."""
        base = self.questionnaire["url"].removesuffix(f"/Questionnaire/{self.policy.id}")
        return build_library(base, self.policy, self.questionnaire["id"])

    @cached_property
    def documentation_facts(self) -> dict[str, tuple[str, ...]]:
        """Per documentation item id, the facts its own ``when`` conditions read (what decides
        whether it is owed once a rule lists it), in order; items without one are left out."""
        found: dict[str, dict[str, None]] = {}
        for doc, routes in needs_of(self.policy).documentation:
            for route in routes:
                if route.own is not None:
                    found.setdefault(doc.id, {}).update(dict.fromkeys(sorted(facts_of(route.own.expr))))
        return {doc_id: tuple(names) for doc_id, names in found.items()}

    def item(self, link_id: str) -> dict[str, Any] | None:
        """The item with ``link_id`` (groups searched), or None."""
        for group in self.questionnaire["item"]:
            for item in group.get("item", []):
                if item["linkId"] == link_id:
                    return item
        return None


def resource_id(policy_id: str, version: str) -> str:
    """A FHIR id for one version of a policy (``[A-Za-z0-9-.]{1,64}``)."""
    text = _ID.sub("-", f"{policy_id}.{version}")
    return text if len(text) <= 64 else text[:55] + "." + hashlib.sha256(text.encode()).hexdigest()[:8]


def questionnaire_url(base: str, policy_id: str) -> str:
    """The canonical url of a policy's Questionnaire (without the version)."""
    return f"{base}/Questionnaire/{policy_id}"


def _name(policy_id: str) -> str:
    return "".join(part.capitalize() for part in re.split(r"[^A-Za-z0-9]+", policy_id) if part) or "Form"


def _extension(url: str, **value: Any) -> dict[str, Any]:
    return {"url": url, **value}


def _expression(expr: str) -> dict[str, Any]:
    return {"language": "text/fhirpath", "expression": expr}


def _value_set(base: str, policy: Policy, fact: str, values: tuple[str, ...], sets: tuple[str, ...],
               titles: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The ValueSet of a fact's answer options: the values the rules test, or for the plan the
    payer's plans, each with its title (``titles``)."""
    system = f.SYSTEMS.get(fact, f"{base}/CodeSystem/{fact}")
    vs_id = resource_id(f"{policy.id}.{fact}", policy.version)
    named = f" (value sets {', '.join(sets)})" if sets else ""
    concepts = [{"code": v, **({"display": titles[v]} if titles and v in titles else {})} for v in values]
    if titles:
        title, description = (f"{f.QUESTIONS.get(fact, fact)}: plans of {policy.payer}",
                              f"The plans of payer {policy.payer} that policy {policy.id} version {policy.version} "
                              f"may apply to, with their titles (_payer.yaml).")
    else:
        title, description = (f"{f.QUESTIONS.get(fact, fact)}: values {policy.title} tests",
                              f"The values of {fact} that the rules of policy {policy.id} version {policy.version} "
                              f"test{named}. Other values are accepted as answers.")
    return {
        "resourceType": "ValueSet", "id": vs_id, "url": f"{base}/ValueSet/{policy.id}.{fact}",
        "version": policy.version, "name": _name(f"{policy.id}-{fact}"), "status": "active",
        "title": title, "description": description,
        "compose": {"include": [{"system": system, "concept": concepts}]},
        "expansion": {"timestamp": f"{policy.effective.isoformat()}T00:00:00Z", "total": len(values),
                      "contains": [{"system": system, **concept} for concept in concepts]},
    }


def _plan_options(policy: Policy, tested: tuple[str, ...], plans: Mapping[str, str]) -> tuple[str, ...]:
    """The plans a plan question offers: the payer's (those the policy is limited to, when it is),
    then any other value its rules test."""
    offered = [plan for plan in plans if not policy.plans or plan in policy.plans]
    return tuple(dict.fromkeys([*offered, *tested]))


def fact_item(name: str, answer_value_set: str | None, library: str | None = None) -> dict[str, Any]:
    """The question that asks a fact, its answer options from ``answer_value_set`` (``url|version``),
    pre-populated by the fact's define in the CQL library named ``library`` (if given) when the
    EHR's data can tell it."""
    spec = FACTS[name]
    asked = f.item_type(spec, answer_value_set is not None or name == "patient.sex")
    item: dict[str, Any] = {"linkId": name, "text": f.QUESTIONS.get(name, spec.doc or name), "type": asked.type}
    if library is not None and name in f.PRE_POPULATED:
        item["extension"] = [_extension(f"{SDC}/sdc-questionnaire-initialExpression",
                                        valueExpression=cql_expression(library, define_name(name)))]
    if asked.repeats:
        item["repeats"] = True
    if answer_value_set is not None:
        item["answerValueSet"] = answer_value_set
    elif name == "patient.sex":
        item["answerOption"] = [{"valueCoding": {"system": f.GENDER, "code": c}} for c in ("female", "male")]
    return item


def known_item(name: str) -> dict[str, Any]:
    """The read-only item of a fact (or of ``order_complete``) the server fills from the order."""
    spec = f.ITEM_SPECS[name]
    asked = f.item_type(spec, False)
    item: dict[str, Any] = {"linkId": name, "text": f.QUESTIONS.get(name, spec.doc or name), "type": asked.type,
                            "readOnly": True}
    if asked.repeats:
        item["repeats"] = True
    return item


def doc_item(item_id: str, text: str, kind: str, enable: str | None) -> dict[str, Any]:
    """The item that asks for a documentation item, enabled while the FHIRPath ``enable`` holds."""
    kind_type = DOC_TYPES.get(kind, "attachment")
    prompt = f"Attach: {text}" if kind_type == "attachment" else f"Attest that this is on file: {text}"
    item: dict[str, Any] = {"linkId": DOC_PREFIX + item_id, "text": prompt, "type": kind_type, "required": True}
    if enable is not None:
        item["extension"] = [_extension(f"{SDC}/sdc-questionnaire-enableWhenExpression",
                                        valueExpression=_expression(enable))]
    return item


def build_form(base: str, policy: Policy, plans: Mapping[str, str] | None = None) -> Form:
    """The Questionnaire and ValueSets of one policy version, under the canonical ``base``; a plan
    question offers the payer's ``plans`` (id -> title, from its ``_payer.yaml``)."""
    needs: Needs = needs_of(policy)
    value_sets: list[dict[str, Any]] = []
    reads = {read.spec.name: read for read in needs.facts}
    fact_items = []
    for name in f.askable(reads):
        if name in ORDER_FACTS:
            continue
        read = reads.get(name)
        answer_value_set = None
        values = read.values if read is not None else ()
        titles = plans if name == "plan" and plans else None
        if titles:
            values = _plan_options(policy, values, titles)
        if read is not None and values:
            vs = _value_set(base, policy, name, values, read.value_sets, titles)
            value_sets.append(vs)
            answer_value_set = f"{vs['url']}|{vs['version']}"
        fact_items.append(fact_item(name, answer_value_set, library_name(policy)))
    pairing = ("other_codes", f.ORDER_COMPLETE.name) if reads.keys() & {"other_codes", "request_codes"} else ()
    plan = () if "plan" in reads else ("plan",)
    order_items = [known_item(name) for name in (*ORDER_FACTS, *plan, *pairing)]
    doc_items = [doc_item(doc.id, doc.text, doc.kind, may_hold(routes)) for doc, routes in needs.documentation]
    groups = [{"linkId": "order", "text": "The order", "type": "group", "item": order_items}]
    if fact_items:
        groups.append({"linkId": "facts", "text": "About this order", "type": "group", "item": fact_items})
    if doc_items:
        groups.append({"linkId": "documentation", "text": "Documentation", "type": "group", "item": doc_items})
    variables = [_extension(f"{EXT}/variable", valueExpression=variable_expression(library_name(policy), fact))
                 for fact in variable_facts(reads)]
    questionnaire = {
        "resourceType": "Questionnaire", "id": resource_id(policy.id, policy.version),
        "meta": {"profile": [STANDARD_PROFILE]}, "text": _about(policy, "Every question"),
        "extension": [
            _extension(f"{SDC}/sdc-questionnaire-launchContext", extension=[
                _extension("name", valueCoding={"system": LAUNCH_CONTEXT, "code": "patient"}),
                _extension("type", valueCode="Patient")]),
            _extension(f"{SDC}/sdc-questionnaire-launchContext", extension=[
                _extension("name", valueCoding={"system": LAUNCH_CONTEXT, "code": "clinical"}),
                *[_extension("type", valueCode=t) for t in LAUNCH_ORDER_TYPES],
                _extension("description", valueString="The order the documentation is for")]),
            *variables,
            _extension(CQF_LIBRARY, valueCanonical=library_url(base, policy.id)),
        ],
        "url": questionnaire_url(base, policy.id), "version": policy.version, "name": _name(policy.id),
        "title": policy.title, "status": "active", "subjectType": ["Patient"],
        "date": policy.effective.isoformat(), "publisher": policy.payer,
        "description": f"Documentation requirements and deciding facts of {policy.title}, generated from "
                       f"policy {policy.id} version {policy.version} ({policy.url}).",
        "effectivePeriod": {"start": policy.effective.isoformat(),
                            **({"end": policy.end.isoformat()} if policy.end else {})},
        "item": groups,
    }
    return Form(policy, questionnaire, tuple(value_sets), adaptive_form(base, policy, questionnaire))


def narrative(text: str) -> dict[str, str]:
    """A generated Narrative of one paragraph of plain ``text``."""
    escaped = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return {"status": "generated", "div": f'<div xmlns="http://www.w3.org/1999/xhtml"><p>{escaped}</p></div>'}


def _about(policy: Policy, what: str, after: str = "") -> dict[str, str]:
    return narrative(f"{what} of {policy.title} (policy {policy.id} version {policy.version}){after}.")


def adaptive_id(policy_id: str, version: str) -> str:
    """The FHIR id of the adaptive form of one version of a policy."""
    return resource_id(policy_id + ADAPTIVE_SUFFIX, version)


def adaptive_form(base: str, policy: Policy, standard: dict[str, Any]) -> dict[str, Any]:
    """The adaptive form of a standard one: no items (``$next-question`` at ``base`` asks them), the
    same metadata and Library under its own canonical and id."""
    kept = {k: v for k, v in standard.items() if k not in ("item", "extension", "meta", "text", "id", "url")}
    return {
        "resourceType": "Questionnaire", "id": adaptive_id(policy.id, policy.version),
        "meta": {"profile": [SEARCH_PROFILE]}, "text": _about(policy, "The adaptive form", ": $next-question asks its questions"),
        "extension": [_extension(QUESTIONNAIRE_ADAPTIVE, valueUrl=base),
                      _extension(CQF_LIBRARY, valueCanonical=library_url(base, policy.id))],
        "url": standard["url"] + ADAPTIVE_SUFFIX, **kept,
    }
