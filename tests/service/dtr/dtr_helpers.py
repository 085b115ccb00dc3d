"""Helpers of the DTR tests: orders and coverages as an EHR sends them, reading package Bundles and
adaptive responses, and FHIR checks (fhir.resources models, FHIRPath constraints and expressions
evaluated with fhirpathpy)."""
from __future__ import annotations

import base64
import copy
import datetime as dt
import json
import re
from pathlib import Path
from functools import lru_cache
from typing import Any, Callable, Iterator

import jwt
from fhir.resources.R4B import get_fhir_model_class
from hypothesis import event
from hypothesis import strategies as st
from fhirpathpy import compile as compile_fhirpath
from fhirpathpy.models import models

from engine.language.ast import facts_of
from engine.language.facts import DATE, FACTS, ICD, NUMBER
from engine.language.parser import parse_condition
from service.dtr.facts import CODE_FORMS, answer_values, askable
from service.dtr.questionnaire import DOC_PREFIX

REPO = Path(__file__).resolve().parents[3]
BUNDLED_RULES = REPO / "rules"
FIXTURES = REPO / "tests" / "fixtures" / "dtr"
#: The constraints, ``trace()`` (an identity that only logs) taken out.
def _untraced(found: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
    return {path: {key: re.sub(r"\.trace\('\w+'\)", "", expression) for key, expression in constraints.items()}
            for path, constraints in found.items()}


_ALL = json.loads((FIXTURES / "constraints.json").read_text(encoding="utf-8"))
#: The constraints every version shares, ``trace()`` (an identity that only logs) taken out.
CONSTRAINTS = _untraced({path: found for path, found in _ALL.items() if path != "versions"})
#: The constraints of each DTR version's profiles.
VERSION_CONSTRAINTS = {version: _untraced(found) for version, found in _ALL["versions"].items()}
VERSION_CONSTRAINTS["2.1"] = VERSION_CONSTRAINTS["2.0.1"]  # 2.1 keeps the 2.0.1 shapes covreq emits
R4 = models["r4"]
PAYER_ID = {"system": "http://example.org/fhir/sid/payer-id", "value": "CMS-MEDICARE"}
CPT = "http://www.ama-assn.org/go/cpt"
HCPCS = "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets"
POS = "https://www.cms.gov/Medicare/Coding/place-of-service-codes/Place_of_Service_Code_Set"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
VARIABLE = "http://hl7.org/fhir/StructureDefinition/variable"
ORIGIN = "http://hl7.org/fhir/us/davinci-dtr/StructureDefinition/information-origin"
#: The information-origin of an answer a person typed, the person named (dtrx-1).
MANUAL = {"url": ORIGIN, "extension": [
    {"url": "source", "valueCode": "manual"},
    {"url": "author", "extension": [{"url": "practitioner", "valueReference": {"reference": "Practitioner/pr-1"}}]}]}


def coverage(plan: str = "Medicare Part B") -> dict[str, Any]:
    """A Medicare Coverage for Patient/pat-1, its payer named by identifier, its plan by class."""
    return {"resourceType": "Coverage", "id": "cov-1", "status": "active",
            "beneficiary": {"reference": "Patient/pat-1"},
            "payor": [{"identifier": PAYER_ID, "display": "Medicare"}],
            "class": [{"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/coverage-class",
                                            "code": "plan"}]}, "value": plan}]}


def service_request(code: str = "15823", day: str = "2024-03-14", pos: str | None = None,
                    diagnoses: tuple[str, ...] = (), order_id: str = "sr-1") -> dict[str, Any]:
    """A draft ServiceRequest for one CPT or HCPCS code on a day, optionally at a place of service."""
    order: dict[str, Any] = {
        "resourceType": "ServiceRequest", "id": order_id, "status": "draft", "intent": "order",
        "subject": {"reference": "Patient/pat-1"},
        "code": {"coding": [{"system": CPT if code[0].isdigit() else HCPCS, "code": code}]},
        "occurrenceDateTime": day, "insurance": [{"reference": "Coverage/cov-1"}]}
    if pos:
        order["locationCode"] = [{"coding": [{"system": POS, "code": pos}]}]
    if diagnoses:
        order["reasonCode"] = [{"coding": [{"system": ICD10CM, "code": d}]} for d in diagnoses]
    return order


def package_request(*orders: dict[str, Any], cov: dict[str, Any] | None = None,
                    questionnaires: tuple[str, ...] = ()) -> dict[str, Any]:
    """$questionnaire-package input Parameters."""
    parameters: list[dict[str, Any]] = [{"name": "coverage", "resource": cov or coverage()}]
    parameters += [{"name": "order", "resource": o} for o in orders]
    parameters += [{"name": "questionnaire", "valueCanonical": q} for q in questionnaires]
    return {"resourceType": "Parameters", "parameter": parameters}


def bundles(parameters: dict[str, Any]) -> list[dict[str, Any]]:
    """The package Bundles of $questionnaire-package output Parameters."""
    return [p["resource"] for p in parameters["parameter"] if p["name"] in ("PackageBundle", "packagebundle")]


def response_of(bundle: dict[str, Any]) -> dict[str, Any]:
    """The QuestionnaireResponse of a package Bundle."""
    return next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "QuestionnaireResponse")


def form_of(response: dict[str, Any]) -> dict[str, Any]:
    """The contained Questionnaire of an adaptive QuestionnaireResponse."""
    return response["contained"][0]


def items(questionnaire: dict[str, Any], group: str | None = None) -> list[dict[str, Any]]:
    """The items of one group of a (generated) Questionnaire, or of every group."""
    return [i for g in questionnaire.get("item", []) if group in (None, g["linkId"]) for i in g.get("item", [])]


def asked(response: dict[str, Any]) -> list[str]:
    """linkIds of the questions a response's form asks: items neither read-only nor display that
    the response has not answered yet."""
    answered = {i["linkId"] for g in response.get("item", []) for i in g.get("item", []) if i.get("answer")}
    return [i["linkId"] for i in items(form_of(response))
            if not i.get("readOnly") and i["type"] != "display" and i["linkId"] not in answered]


def by_hand(answer_given: dict[str, Any]) -> dict[str, Any]:
    """``answer_given`` with the information-origin a DTR client stamps on what a person typed
    (kept when it carries one)."""
    if "extension" in answer_given:
        return answer_given
    return {**answer_given, "extension": [MANUAL]}


def answer(response: dict[str, Any], link_id: str, *answers: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``response`` with ``answers`` given to ``link_id`` (in the item's group), each
    stamped as a person's (:func:`by_hand`) unless it carries extensions."""
    answers = tuple(map(by_hand, answers))
    result = copy.deepcopy(response)
    group = next(g["linkId"] for g in form_of(result)["item"] if any(i["linkId"] == link_id for i in g.get("item", [])))
    groups = result.setdefault("item", [])
    target = next((g for g in groups if g["linkId"] == group), None)
    if target is None:
        target = {"linkId": group, "item": []}
        groups.append(target)
    target["item"] = [i for i in target["item"] if i["linkId"] != link_id] + [{"linkId": link_id, "answer": list(answers)}]
    return result


def coverage_information(response: dict[str, Any]) -> dict[str, list[Any]]:
    """The sub-extensions of a response's coverage-information, by url."""
    (info,) = [e for e in response.get("extension", []) if e["url"].endswith("ext-coverage-information")]
    subs: dict[str, list[Any]] = {}
    for sub in info["extension"]:
        value = next(v for k, v in sub.items() if k.startswith("value")) if "extension" not in sub else sub
        subs.setdefault(sub["url"], []).append(value)
    return subs


def parses_as_r4(resource: dict[str, Any]) -> None:
    """The resource (and everything in it) parses with fhir.resources' R4B model of its type."""
    model = get_fhir_model_class(resource["resourceType"])
    parsed = model.model_validate(resource)
    assert parsed.model_dump(mode="json", exclude_none=True)["resourceType"] == resource["resourceType"]


@lru_cache(maxsize=4096)
def _compiled(expression: str) -> Callable[[Any, dict[str, Any]], list[Any]]:
    return compile_fhirpath(expression, R4)  # type: ignore[no-any-return]


def fhirpath(resource: Any, expression: str, variables: dict[str, Any] | None = None) -> list[Any]:
    """``expression`` evaluated with fhirpathpy (R4 model) on ``resource``."""
    return _compiled(expression)(resource, {"resource": resource, **(variables or {})})


def _contexts(resource: dict[str, Any], path: str) -> Iterator[tuple[str, Any]]:
    if path == resource["resourceType"]:
        yield path, resource
    elif not path.startswith(resource["resourceType"] + "."):
        return
    elif path == "Parameters.input":  # the $questionnaire-package input (it names a coverage)
        if any(p.get("name") == "coverage" for p in resource.get("parameter", [])):
            yield "input", resource
    elif path == "Questionnaire.item":
        for index, node in enumerate(fhirpath(resource, "repeat(item)")):
            yield f"item #{index} ({node.get('linkId')})", node
    elif path == "QuestionnaireResponse.item.answer":
        for index, node in enumerate(fhirpath(resource, "repeat(item).answer")):
            yield f"answer #{index}", node


def assert_constraints(resource: dict[str, Any], version: str = "2.0.1") -> None:
    """Every constraint of ``constraints.json`` that applies to the resource (and to its contained,
    bundled and parameter resources) holds: those of every version and those of DTR ``version``."""
    for path, constraints in [*CONSTRAINTS.items(), *VERSION_CONSTRAINTS[version].items()]:
        for where, node in _contexts(resource, path):
            for key, expression in constraints.items():
                # an invariant that evaluates to nothing (e.g. about an absent element) holds, as validators read it
                assert fhirpath(node, expression) in ([True], []), f"{key} fails on {resource['resourceType']} {where}"
    inner = [*resource.get("contained", []), *(e["resource"] for e in resource.get("entry", [])),
             *(p["resource"] for p in resource.get("parameter", []) if "resource" in p)]
    for found in inner:
        assert_constraints(found, version)


#: The item expressions the Inferno DTR kit requires in CQL (cql_test.rb, check_item_extension).
KIT_ITEM_EXPRESSIONS = tuple(f"http://hl7.org/fhir/uv/sdc/StructureDefinition/sdc-questionnaire-{kind}Expression"
                             for kind in ("initial", "candidate", "context"))


def library_defines(library: dict[str, Any]) -> set[str]:
    """The statements (defines and functions) of a Library resource, read from its ELM content."""
    (elm,) = [c["data"] for c in library["content"] if c["contentType"] == "application/elm+json"]
    return {d["name"] for d in json.loads(base64.b64decode(elm))["library"]["statements"]["def"]}


#: The root expressions the Inferno DTR kit requires in CQL (cql_test.rb, check_questionnaire_extensions).
KIT_ROOT_EXPRESSIONS = (VARIABLE, "http://hl7.org/fhir/uv/sdc/StructureDefinition/sdc-questionnaire-launchContext",
                        "http://hl7.org/fhir/uv/sdc/StructureDefinition/sdc-questionnaire-itemPopulationContext")
#: A CQL expression naming a statement of a library: ``"<library>"."<define>"``, or a call of one
#: of its functions on the QuestionnaireResponse being filled (``(%resource)``).
LIBRARY_STATEMENT = re.compile(r'"([^"]+)"\."([^"]+)"(\(%resource\))?')


def _expression_fault(where: str, expression: dict[str, Any], libraries: dict[str, set[str]]) -> str | None:
    """What the kit's check_for_cql and check_expression_format find wrong in one Expression:
    not ``text/cql``, or not starting with a Library's name; stricter than the kit, naming no
    statement of that Library."""
    named = LIBRARY_STATEMENT.fullmatch(expression["expression"])
    if expression["language"] != "text/cql":
        return f"{where}: {expression['language']}, not text/cql"
    if not named or named[2] not in libraries.get(named[1], set()):
        return f"{where}: {expression['expression']} names no statement of a Library given"
    return None


def kit_root_expression_faults(questionnaire: dict[str, Any], libraries: dict[str, set[str]]) -> list[str]:
    """What the kit's verify_questionnaire_extensions would find wrong in ``questionnaire``'s root
    variable, launchContext and itemPopulationContext expressions ("Variable expression logic not
    written in CQL", "Expression in questionnaire misformatted"); ``libraries``: name -> statements."""
    return [fault for ext in questionnaire.get("extension", [])
            if ext["url"] in KIT_ROOT_EXPRESSIONS and "valueExpression" in ext
            and (fault := _expression_fault(ext["valueExpression"].get("name", ext["url"]), ext["valueExpression"],
                                            libraries))]


def kit_item_expression_faults(questionnaire: dict[str, Any], libraries: dict[str, set[str]]) -> list[str]:
    """What the kit's verify_questionnaire_items would find wrong in ``questionnaire``: an item's
    initial, candidate or context expression not ``text/cql``, or (the kit's check_expression_format)
    not starting with the name of a Library given (``libraries``: name -> defines); stricter than the
    kit, also one naming no define of that Library. Empty when every item expression passes."""
    faults = []
    pending = list(questionnaire.get("item", []))
    while pending:
        item = pending.pop()
        pending.extend(item.get("item", []))
        for ext in item.get("extension", []):
            if ext["url"] not in KIT_ITEM_EXPRESSIONS:
                continue
            fault = _expression_fault(item["linkId"], ext["valueExpression"], libraries)
            if fault is not None:
                faults.append(fault)
    return faults


def fact_values(name: str, tested: tuple[str, ...]) -> st.SearchStrategy[Any]:
    """Values of a fact for property tests: one the rules test, or another one."""
    spec = FACTS[name]
    if spec.type == NUMBER:
        one: st.SearchStrategy[Any] = st.integers(0, 120).map(float)
    elif spec.type == DATE:
        one = st.dates(dt.date(1930, 1, 1), dt.date(2023, 12, 31)).map(dt.date.isoformat)
    elif spec.type == ICD:
        one = st.sampled_from([*tested, "Z00.00", "M54.50"])
    elif name in CODE_FORMS:  # a form takes only codes of the fact's form
        one = st.sampled_from([*tested, *[c for c in ("other", "131", "22", "FL", "male") if
                                          CODE_FORMS[name][0].fullmatch(c)]])
    else:
        one = st.sampled_from([*tested, "other", "131", "22"])
    return st.lists(one, min_size=1, max_size=3, unique=True) if spec.many else one


@st.composite
def order_lines(draw: st.DrawFn, reads: dict[str, Any]) -> dict[str, Any]:
    """The order's other codes (some the rules test, some not) and maybe ``order_complete``, when
    the rules read them."""
    tested = [v for name in ("other_codes", "request_codes") if name in reads for v in reads[name].values]
    if not tested or not draw(st.booleans()):
        return {}
    found: dict[str, Any] = {"other_codes": draw(st.lists(st.sampled_from([*tested, "99213"]), min_size=1,
                                                          max_size=3, unique=True))}
    if draw(st.booleans()):
        found["order_complete"] = draw(st.booleans())
    return found


def questions_are_owed(response: dict[str, Any], decision: dict[str, Any]) -> None:
    """Every question the response's form asks is a fact the decision waits for, a fact that decides
    whether a document is owed (one its pending condition reads) or a document it owes. ``decision``
    is answered with ``explain``, which gives a pending document's condition as rule text."""
    waiting = askable(decision["info_needed"]) if "conditional" in (decision["pa_needed"], decision["covered"]) else []
    waiting += askable(name for d in decision["documentation"] if d.get("condition")
                       for name in sorted(facts_of(parse_condition(d["condition"]))))
    documents = {DOC_PREFIX + d["id"] for d in decision["documentation"]}
    for link_id in asked(response):
        assert link_id in waiting or link_id in documents, (link_id, decision)


def answer_all(response: dict[str, Any], draw: st.DrawFn, given: dict[str, Any]) -> dict[str, Any]:
    """The response with every question of its form answered (facts at random, documents attached)."""
    groups: dict[str, list[dict[str, Any]]] = {g["linkId"]: list(g.get("item", [])) for g in response.get("item", [])}
    for group in form_of(response)["item"]:
        for item in group.get("item", []):
            if item.get("readOnly") or any(i["linkId"] == item["linkId"] for i in groups.get(group["linkId"], [])):
                continue
            if item["linkId"].startswith(DOC_PREFIX):
                value = [{"valueAttachment": {"title": "record.pdf"}} if item["type"] == "attachment"
                         else {"valueBoolean": True}]
            else:
                given[item["linkId"]] = draw(fact_values(item["linkId"], ()))
                value = answer_values(FACTS[item["linkId"]], given[item["linkId"]])
            groups.setdefault(group["linkId"], []).append({"linkId": item["linkId"], "answer": list(map(by_hand, value))})
    return {**response, "item": [{"linkId": k, "item": v} for k, v in groups.items() if v]}


def key_file(path: Path, active: str, **secrets: str) -> Path:
    """A COVREQ_DTR_KEYS file at ``path``: ``secrets`` by kid, ``active`` signing."""
    path.write_text(f"active: {active}\nkeys:\n" + "".join(f"  {kid}: {secret}\n" for kid, secret in secrets.items()),
                    encoding="utf-8")
    return path


def _group(items_of: dict[str, Any], link_id: str) -> dict[str, Any]:
    """The group ``link_id`` of a Questionnaire or QuestionnaireResponse, added when missing."""
    found = next((g for g in items_of.setdefault("item", []) if g["linkId"] == link_id), None)
    if found is None:
        found = {"linkId": link_id, "text": link_id, "item": []}
        if items_of.get("resourceType") == "Questionnaire":
            found["type"] = "group"
        items_of["item"].append(found)
    return found


def with_answer(response: dict[str, Any], group: str, link_id: str, *answers: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``response`` with ``answers`` to ``link_id`` in ``group``, the contained form given
    the item there too when it lacks it: what a client can do to any response it holds. Answers
    outside the server's ``order`` group are stamped as a person's (:func:`by_hand`)."""
    answers = answers if group == "order" else tuple(map(by_hand, answers))
    result = copy.deepcopy(response)
    defined = _group(form_of(result), group)
    if not any(i["linkId"] == link_id for g in form_of(result)["item"] for i in g.get("item", [])):
        defined.setdefault("item", []).append({"linkId": link_id, "text": link_id, "type": "string",
                                               "repeats": True})
    answered = _group(result, group)
    answered["item"] = [i for i in answered.get("item", []) if i["linkId"] != link_id]
    if answers:
        answered["item"].append({"linkId": link_id, "answer": list(answers)})
    return result


def with_reference(response: dict[str, Any], url: str, reference: str) -> dict[str, Any]:
    """A copy of ``response`` whose extension ``url`` (qr-coverage, qr-context) naming a resource of
    ``reference``'s type names ``reference``."""
    result = copy.deepcopy(response)
    kind = reference.split("/")[0] + "/"
    for extension in result["extension"]:
        if extension["url"] == url and extension["valueReference"]["reference"].startswith(kind):
            extension["valueReference"] = {"reference": reference}
    return result


def without_extension(response: dict[str, Any], url: str) -> dict[str, Any]:
    """A copy of ``response`` without its extension ``url``."""
    return {**response, "extension": [e for e in response.get("extension", []) if e["url"] != url]}


def altered_answer(answer_given: dict[str, Any]) -> dict[str, Any]:
    """An answer that states another value than ``answer_given`` (its extensions kept)."""
    key, value = next((k, v) for k, v in answer_given.items() if k.startswith("value"))
    if key == "valueDate":
        value = (dt.date.fromisoformat(value[:10]) + dt.timedelta(days=1)).isoformat()
    elif key == "valueBoolean":
        value = not value
    elif key in ("valueDecimal", "valueInteger"):
        value = value + 1
    elif key == "valueCoding":
        value = {**value, "code": _other_code(value["code"])}
    else:
        value = _other_code(value)
    return {**answer_given, key: value}


def _other_code(code: str) -> str:
    """Another code of the same form (the last digit or letter moved on one): a code-form check
    must not be what refuses an altered answer."""
    last = code[-1:] or "0"
    if last.isdigit():
        return code[:-1] + str((int(last) + 1) % 10)
    if last.isalpha():
        base = "a" if last.islower() else "A"
        return code[:-1] + chr(ord(base) + (ord(last) - ord(base) + 1) % 26)
    return code + "9"


def server_answers(response: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """The answers the server filled (group ``order``), by linkId."""
    return {i["linkId"]: i["answer"] for g in response.get("item", []) if g["linkId"] == "order" for i in g["item"]}


#: The ways a client can change what the server signed into an adaptive response.
TAMPERINGS = ("server-answer-changed", "server-answer-removed", "server-answer-restated", "form-swapped",
              "coverage-swapped", "order-swapped", "patient-swapped", "intended-use-dropped", "signature-removed",
              "signed-elsewhere", "signature-altered")


def _other(draw: st.DrawFn, current: str, prefix: str) -> str:
    return draw(st.sampled_from([f"{prefix}someone-elses", f"{prefix}{current}-2", f"{prefix}1"]).filter(
        lambda new: new != current))


def tamper(response: dict[str, Any], draw: st.DrawFn, canonicals: list[str], kind: str | None = None) -> dict[str, Any]:
    """``response`` with one thing the server signed changed (``kind``, else drawn among
    :data:`TAMPERINGS`): a server answer changed, removed or restated with another value as the
    user's, the form swapped for another of ``canonicals``, the Coverage, order or patient swapped,
    the intended use dropped, the signature removed, made with another key or altered."""
    kind = kind or draw(st.sampled_from(TAMPERINGS))
    event(f"tampering: {kind}")
    filled = server_answers(response)
    link_id = draw(st.sampled_from(sorted(filled)))
    derived = form_of(response)["derivedFrom"][0]
    references = [(e["url"], e["valueReference"]["reference"]) for e in response["extension"] if "valueReference" in e]
    coverage_url, coverage_ref = next((u, r) for u, r in references if r.startswith("Coverage/"))
    order_url, order_ref = next((u, r) for u, r in references if not r.startswith("Coverage/"))
    (sealed,) = [e for e in response["extension"] if e["url"] == "urn:covreq:dtr-signed-context"]
    if kind == "server-answer-changed":
        return with_answer(response, "order", link_id, *map(altered_answer, filled[link_id]))
    if kind == "server-answer-removed":
        return with_answer(response, "order", link_id)
    if kind == "server-answer-restated":
        return with_answer(response, draw(st.sampled_from(["facts", "documentation"])), link_id,
                           *map(altered_answer, filled[link_id]))
    if kind == "form-swapped":
        result = copy.deepcopy(response)
        form_of(result)["derivedFrom"] = [draw(st.sampled_from([c for c in canonicals if c != derived]))]
        return result
    if kind == "coverage-swapped":
        return with_reference(response, coverage_url, _other(draw, coverage_ref, "Coverage/"))
    if kind == "order-swapped":
        return with_reference(response, order_url, _other(draw, order_ref, "ServiceRequest/"))
    if kind == "patient-swapped":
        return {**response, "subject": {"reference": _other(draw, response["subject"]["reference"], "Patient/")}}
    if kind == "intended-use-dropped":
        return without_extension(response, "http://hl7.org/fhir/us/davinci-dtr/StructureDefinition/intendedUse")
    if kind == "signature-removed":
        return without_extension(response, sealed["url"])
    header, payload, signature = sealed["valueString"].split(".")
    if kind == "signed-elsewhere":
        claims = jwt.decode(sealed["valueString"], options={"verify_signature": False})
        kid = jwt.get_unverified_header(sealed["valueString"])["kid"]
        token = jwt.encode(claims, draw(st.text(min_size=32, max_size=40)), algorithm="HS256",
                           headers={"kid": draw(st.sampled_from([kid, "another-kid"])), "typ": "covreq-dtr-context+jwt"})
    else:
        position = draw(st.integers(0, len(signature) - 2))  # the last character may carry unused bits
        flipped = "A" if signature[position] != "A" else "B"
        token = ".".join([header, payload, signature[:position] + flipped + signature[position + 1:]])
    return {**without_extension(response, sealed["url"]),
            "extension": [*without_extension(response, sealed["url"])["extension"], {**sealed, "valueString": token}]}
