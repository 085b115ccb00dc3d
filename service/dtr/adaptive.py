"""SDC adaptive forms: the QuestionnaireResponse of one service line, and ``$next-question``.

The QuestionnaireResponse carries everything the engine needs, so the server keeps no state: a
contained Questionnaire derived from the policy's form, the facts the order told (read-only items
of the ``order`` group, answered by the server), the facts a user answered (group ``facts``) and
the documentation given (group ``documentation``). Each call turns the answers into a v1 request,
runs the rules again, and asks what the new decision still depends on, then for the documentation
it owes; when nothing is left the response is ``completed`` and states the decision.

What the server filled and decided (the ``order`` answers, the form, the Coverage, the orders, the
patient and the intended use) is signed into every response it returns (service/dtr/signing.py) and checked on every call:
a response that changed any of it, or answers a fact only the server fills, is refused (422).
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

import engine
from engine.language.facts import FACTS
from service.crd.assertions import from_decision
from service.crd.coverage_information import COVERAGE_INFORMATION, Answered, assertion_id
from service.crd.coverage_information import coverage_information as crd_coverage_information
from service.crd.requests import Line, Order
from service.dtr import facts as f
from service.dtr.answers import ORIGIN, check_origin
from service.dtr.catalogue import Catalogue
from service.dtr.library import CQF_LIBRARY
from service.dtr.signing import CONTEXT_EXPRESSION, CONTEXT_URL, Context, Keyring, Signed
from service.dtr.versions import VERSIONS, DtrVersion
from service.fhir import r4
from service.fhir.outcome import FhirError
from service.dtr.questionnaire import (ADAPTIVE_PROFILE, DOC_PREFIX, DTR, ORDER_FACTS, SDC, Form, doc_item,
                                       fact_item, known_item, narrative)
from service.fhir.systems import BILLING_SYSTEMS
from service.fhir.values import as_list, codings, member

#: The profile of an adaptive response per version (2.0.1 and 2.1 have no adaptive one of their own).
RESPONSE_PROFILES = {"2.0.1": f"{DTR}/dtr-questionnaireresponse", "2.1": f"{DTR}/dtr-questionnaireresponse",
                     "2.2": f"{DTR}/dtr-questionnaireresponse-adapt"}
ADAPTIVE = f"{SDC}/sdc-questionnaire-questionnaireAdaptive"
QR_COVERAGE = f"{DTR}/qr-coverage"
QR_CONTEXT = f"{DTR}/qr-context"
INTENDED_USE = f"{DTR}/intendedUse"
FORM_ID = "form"
#: v1 system -> the FHIR system URI written for it (the first one covreq reads)
BILLING_URIS = {system: uri for uri, system in reversed(BILLING_SYSTEMS.items())}
#: Fields of the QuestionnaireResponse a call rewrites; every other one is carried through.
_REWRITTEN = ("contained", "questionnaire", "status", "authored", "item", "meta")
#: The answer a documentation item takes, by item type: a document attached, or an attestation.
_DOC_ANSWERS = {"attachment": "valueAttachment", "boolean": "valueBoolean"}
#: Facts only the server fills, from the order: a user may never answer them.
SERVER_ONLY = f.NOT_ASKED | {f.ORDER_COMPLETE.name}
#: Extensions a call writes itself: one the client sends is dropped, never carried through.
_STATED = (COVERAGE_INFORMATION, CONTEXT_URL, QR_COVERAGE, QR_CONTEXT, INTENDED_USE)


@dataclass
class Answers:
    """What a QuestionnaireResponse says: facts the server filled, facts a user gave, documents."""

    known: dict[str, Any] = field(default_factory=dict)
    given: dict[str, Any] = field(default_factory=dict)
    items: dict[str, dict[str, Any]] = field(default_factory=dict)  # linkId -> the response item as sent

    def facts(self) -> dict[str, Any]:
        """Every fact: the user's answers and the server's (a user never overrides the server)."""
        return {**self.given, **self.known}


def _server_answers(spec_name: str, value: Any, version: DtrVersion) -> list[dict[str, Any]]:
    origin = {"url": ORIGIN, "extension": [{"url": "source", "valueCode": version.server_origin}]}
    return [{**a, "extension": [origin]} for a in f.answer_values(f.ITEM_SPECS[spec_name], value)]


def envelope(version: DtrVersion, coverages: Iterable[str], orders: Iterable[str], subject: str | None,
             uses: Iterable[str]) -> dict[str, Any]:
    """The extensions and subject that tie a response to its Coverage, orders and intended use, in
    ``version``'s shapes (``uses``: DocReason codes)."""
    extensions = [{"url": QR_CONTEXT if version.coverage_in_context else QR_COVERAGE,
                   "valueReference": {"reference": coverage}} for coverage in coverages]
    extensions += [{"url": QR_CONTEXT, "valueReference": {"reference": o}} for o in orders]
    extensions += [{"url": INTENDED_USE, "valueCodeableConcept": {"coding": [
        {"system": version.doc_reason_system, "code": use}]}} for use in uses]
    return {"extension": extensions, **({"subject": {"reference": subject}} if subject else {})}


def _question(form: Form, name: str) -> dict[str, Any]:
    """The form's question about a fact (one its own rules do not read is asked plainly), required."""
    question = {**(form.item(name) or fact_item(name, None)), "required": True}
    question.pop("readOnly", None)
    return question


def _library(form: Form) -> list[dict[str, Any]]:
    """The adaptive form's ``cqf-library``: the Library its questions' CQL initialExpressions read."""
    return [e for e in form.adaptive["extension"] if e["url"] == CQF_LIBRARY]


def _decision_text(decision: Mapping[str, Any]) -> str:
    owed = "; ".join(d["text"] + (f" (needed {d['required_when']})" if d.get("required_when") else "")
                     for d in decision.get("documentation", []))
    needs = ", ".join(decision.get("info_needed", []))
    parts = [f"Prior authorization: {decision['pa_needed']}.", *decision.get("reasons", [])]
    if needs:
        parts.append(f"Still depends on: {needs}.")
    if owed:
        parts.append(f"Documentation owed: {owed}.")
    return " ".join(parts)


def _references(envelope: Mapping[str, Any], url: str) -> list[str]:
    return [e["valueReference"]["reference"] for e in as_list(envelope.get("extension"))
            if isinstance(e, dict) and e.get("url") == url and isinstance(e.get("valueReference"), dict)
            and isinstance(e["valueReference"].get("reference"), str)]


def coverages_of(envelope: Mapping[str, Any]) -> list[str]:
    """The Coverage references of a response: ``qr-coverage`` (2.2) or ``qr-context`` (2.0.1, 2.1)."""
    return _references(envelope, QR_COVERAGE) + [r for r in _references(envelope, QR_CONTEXT)
                                                 if r.startswith("Coverage/")]


def orders_of(envelope: Mapping[str, Any]) -> list[str]:
    """The order references of a response (its ``qr-context`` references but the Coverage)."""
    return [r for r in _references(envelope, QR_CONTEXT) if not r.startswith("Coverage/")]


def coverage_information(decision: Mapping[str, Any], envelope: Mapping[str, Any], form: Form,
                         digest: str, version: DtrVersion) -> dict[str, Any] | None:
    """CRD ``coverage-information`` (of the CRD version ``version`` goes with) stating the decision,
    for the response's coverage and order; None when the response names no coverage."""
    coverages, orders = coverages_of(envelope), orders_of(envelope)
    if not coverages:
        return None
    line = Line(decision["code"], decision["system"], BILLING_URIS[decision["system"]])
    order = Order({}, orders[0] if orders else "", (line,))
    assertion = from_decision(dict(decision), line, False)
    key = assertion_id(order.reference, coverages[0], digest, [assertion], ehr="",  # DTR is not told the EHR
                       patient=member(member(envelope, "subject"), "reference"))
    answered = Answered(order, coverages[0], form.policy.payer, assertion, key)
    return crd_coverage_information(answered, dt.date.today(), version.crd_version)


def page(form: Form, answers: Answers, decision: Mapping[str, Any], envelope: Mapping[str, Any],
         base: str, digest: str, keys: Keyring, version: DtrVersion, since: Signed | None = None,
         carried: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The QuestionnaireResponse, in ``version``'s shapes, that asks what ``decision`` still depends
    on and what decides the documentation it may owe (the facts of a documentation item's pending
    condition), then the documentation it owes; ``completed`` with the decision (as text and as CRD
    coverage-information) when neither is left. ``envelope`` (:func:`envelope`) ties it to its
    Coverage and orders; the other elements of ``carried`` (the response answered) are kept. What it
    says the server filled and decided is signed with ``keys`` (keeping the times of ``since``)."""
    known = [n for n in dict.fromkeys((*ORDER_FACTS, *FACTS, f.ORDER_COMPLETE.name)) if n in answers.known]
    conditional = "conditional" in (decision["pa_needed"], decision["covered"])
    docs = decision.get("documentation", [])
    deciding = decision.get("info_needed", []) if conditional else []
    owed_if = [name for doc in docs if doc.get("required_when") for name in form.documentation_facts.get(doc["id"], ())]
    asking = [n for n in f.askable([*deciding, *owed_if]) if n not in answers.known and n in FACTS]
    fact_names = list(dict.fromkeys([*[n for n in answers.given if n not in answers.known], *asking]))
    fact_items = [_question(form, n) for n in fact_names]
    doc_items = []
    for doc in docs:
        item = dict(form.item(DOC_PREFIX + doc["id"]) or doc_item(doc["id"], doc["text"], doc["kind"], None))
        if doc.get("required_when"):
            item["required"] = False
            item["text"] += f" (needed {doc['required_when']})"
        doc_items.append(item)
    pending = [n for n in asking if n not in answers.given]
    pending += [i["linkId"] for i in doc_items if i["required"] and i["linkId"] not in answers.items]
    groups: list[tuple[dict[str, Any], list[dict[str, Any]]]] = [
        ({"linkId": "order", "text": "The order", "type": "group"}, [known_item(n) for n in known])]
    if fact_items:
        groups.append(({"linkId": "facts", "text": "About this order", "type": "group"}, fact_items))
    if doc_items:
        groups.append(({"linkId": "documentation", "text": "Documentation", "type": "group"}, doc_items))
    if not pending:
        groups.append(({"linkId": "decision", "text": _decision_text(decision), "type": "display"}, []))
    contained = {
        "resourceType": "Questionnaire", "id": FORM_ID, "meta": {"profile": [ADAPTIVE_PROFILE]},
        "text": narrative(f"The questions of {form.questionnaire['title']} asked so far."),
        "extension": [{"url": ADAPTIVE, "valueUrl": base}, *form.variables, *_library(form)],
        "derivedFrom": [form.adaptive_canonical],
        "name": form.questionnaire["name"], "status": "active", "subjectType": ["Patient"],
        "title": form.questionnaire["title"],
        "item": [{**g, "item": items} if items else g for g, items in groups],
    }
    response_items = []
    for group, items in groups:
        answered = []
        for item in items:
            if item["linkId"] in answers.known:
                answered.append({"linkId": item["linkId"], "text": item["text"],
                                 "answer": _server_answers(item["linkId"], answers.known[item["linkId"]], version)})
            elif item["linkId"] in answers.items:
                answered.append({**answers.items[item["linkId"]], "text": item["text"]})
        if answered:
            response_items.append({"linkId": group["linkId"], "text": group["text"], "item": answered})
    response = {key: value for key, value in (carried or {}).items() if key not in _REWRITTEN}
    response.update({
        "resourceType": "QuestionnaireResponse", "meta": {"profile": [RESPONSE_PROFILES[version.code]]},
        **({"subject": envelope["subject"]} if "subject" in envelope else {}),
        "contained": [contained], "questionnaire": f"#{FORM_ID}",
        "status": "in-progress" if pending else "completed",
        "authored": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    })
    if response_items:
        response["item"] = response_items
    stated = coverage_information(decision, envelope, form, digest, version) if not pending else None
    kept = [e for e in as_list(response.get("extension")) if member(e, "url") not in _STATED]
    response["extension"] = [*kept, *envelope["extension"], *([stated] if stated else [])]
    seal = keys.seal(context_of(response, contained, read_answers(response, contained, version), version), since)
    response["extension"].append(seal)
    return response


def context_of(response: Mapping[str, Any], questionnaire: Mapping[str, Any], answers: Answers,
               version: DtrVersion) -> Context:
    """What a response in ``version``'s shapes says the server filled and decided (``answers`` read
    from it). The form is the contained Questionnaire's ``derivedFrom``, or, for a copy of the
    package's adaptive form (SDC: the client contains the Questionnaire it was given), its ``url|version``."""
    subject = response.get("subject")
    reference = subject.get("reference") if isinstance(subject, dict) else None
    uses = [f"{c.get('system', '')}|{c['code']}" for e in as_list(response.get("extension"))
            if member(e, "url") == INTENDED_USE for c in codings(e.get("valueCodeableConcept"))]
    derived = [c for c in as_list(questionnaire.get("derivedFrom")) if isinstance(c, str)]
    if not derived and isinstance(questionnaire.get("url"), str) and isinstance(questionnaire.get("version"), str):
        derived = [f"{questionnaire['url']}|{questionnaire['version']}"]  # the package's adaptive form, copied as is
    return Context(tuple(derived),
                   answers.known, tuple(coverages_of(response)), tuple(orders_of(response)),
                   reference if isinstance(reference, str) else None, tuple(uses), version.code)


def _item_at(link_id: str) -> str:
    return f"QuestionnaireResponse.repeat(item).where(linkId = '{link_id}')"


#: The parts of a context other than the facts: what it is called in a refusal, and where it sits.
_PARTS = (("form", "the contained Questionnaire's derivedFrom", "QuestionnaireResponse.contained.derivedFrom"),
          ("coverage", "the Coverage reference (qr-coverage; qr-context before DTR 2.2)",
           f"QuestionnaireResponse.extension.where((url = '{QR_COVERAGE}' or url = '{QR_CONTEXT}') "
           "and value.reference.startsWith('Coverage/'))"),
          ("orders", "the order reference (qr-context)", f"QuestionnaireResponse.extension.where(url = '{QR_CONTEXT}' "
           "and value.reference.startsWith('Coverage/').not())"),
          ("subject", "the subject", "QuestionnaireResponse.subject"),
          ("uses", "the intendedUse", f"QuestionnaireResponse.extension.where(url = '{INTENDED_USE}')"))


def check_context(signed: Context, seen: Context, given: Iterable[str]) -> None:
    """Raises FhirError (422) naming the first part of what the server signed that the response
    changed, dropped or added to, or a fact the user answered (``given``) that only the server fills."""
    for part, what, where in _PARTS:
        if getattr(signed, part) != getattr(seen, part):
            raise FhirError(422, f"{what} differs from what the server signed", where)
    for name in sorted(signed.known.keys() | seen.known.keys()):
        if name not in seen.known:
            raise FhirError(422, f"the order item '{name}' the server signed is missing", _item_at(name))
        if name not in signed.known:
            raise FhirError(422, f"the order item '{name}' was not filled by the server", _item_at(name))
        if seen.known[name] != signed.known[name]:
            raise FhirError(422, f"the order item '{name}' differs from what the server signed", _item_at(name))
    for name in given:
        if name in signed.known or name in SERVER_ONLY:
            raise FhirError(422, f"'{name}' is filled by the server from the order; a user cannot answer it",
                            _item_at(name))


def decide(ruleset: engine.RuleSet, form: Form, facts: Mapping[str, Any]) -> dict[str, Any]:
    """The decision for the one service line ``facts`` describe, under the form's payer."""
    body = f.v1_body({"payer": form.policy.payer, **facts})
    try:
        return ruleset.evaluate(body)["decisions"][0]  # type: ignore[no-any-return]
    except engine.RequestError as err:
        raise FhirError(400, f"the answers give an invalid {err.location}: {err.message}",
                             f"QuestionnaireResponse.item.where(linkId='{_link_of(err.location)}')") from err


def _link_of(location: str) -> str:
    """The form's linkId for a v1 request location (``services[0].stage`` -> ``stage``)."""
    return location.split("].", 1)[1] if location.startswith("services[") else location


def _walk(items: Any, path: str) -> Iterable[tuple[dict[str, Any], str]]:
    """(item, FHIRPath-like location) of every answered item."""
    for index, item in enumerate(items if isinstance(items, list) else []):
        where = f"{path}.item[{index}]"
        if not isinstance(item, dict) or not isinstance(item.get("linkId"), str):
            raise FhirError(400, "every item needs a linkId", where)
        if item.get("answer") is not None:
            yield item, where
        yield from _walk(item.get("item"), where)


def read_answers(response: Mapping[str, Any], questionnaire: Mapping[str, Any], version: DtrVersion,
                 form: Form | None = None) -> Answers:
    """The facts and documents a QuestionnaireResponse gives; raises FhirError (400) when an
    answer is not an item of the contained Questionnaire (nor a question of ``form``, the server's
    own, when given) or does not fit the item (its type as ``form`` defines it when given;
    service/dtr/answers.py for its origin)."""
    defined = {}
    for group in as_list(questionnaire.get("item")):
        for item in as_list(member(group, "item")):
            if isinstance(item, dict) and isinstance(item.get("linkId"), str):
                defined[item["linkId"]] = (group.get("linkId"), item)
    found = Answers()
    for item, where in _walk(response.get("item"), "QuestionnaireResponse"):
        link_id = item["linkId"]
        if link_id not in defined and (own := _own_question(form, link_id)) is not None:
            defined[link_id] = ("facts", own)  # a question of the server's form the page had not asked yet
        if link_id not in defined:
            raise FhirError(400, f"'{link_id}' is not an item of the contained Questionnaire", where)
        group, definition = defined[link_id]
        definition = (form.item(link_id) if form is not None else None) or definition  # the server's own
        answers = item["answer"]
        if not isinstance(answers, list):
            raise FhirError(400, f"the answers to '{link_id}' must be a list (a JSON array)", f"{where}.answer")
        if group != "order":
            for index, given in enumerate(answers):
                check_origin(given, version, f"{where}.answer[{index}]")
        if link_id.startswith(DOC_PREFIX):
            wanted = _DOC_ANSWERS.get(definition.get("type"), "valueAttachment")
            for index, given in enumerate(answers):
                if not isinstance(given, dict) or [k for k in given if k.startswith("value")] != [wanted]:
                    raise FhirError(400, f"'{link_id}' is answered with a {wanted}", f"{where}.answer[{index}]")
            if any(a[wanted] is not False for a in answers):
                found.items[link_id] = item
            continue
        spec = f.ITEM_SPECS.get(link_id)
        if spec is None or not answers:
            continue
        try:
            values = [f.answer_value(spec, a) for a in answers]
        except f.AnswerError as err:
            raise FhirError(400, str(err), f"{where}.answer") from err
        if not (spec.many or definition.get("repeats")) and len(values) > 1:
            raise FhirError(400, f"'{link_id}' takes one answer, not {len(values)}", f"{where}.answer")
        value = values if spec.many else values[0]
        if group == "order":
            found.known[link_id] = value
        else:
            found.given[link_id] = value
            found.items[link_id] = item
    return found


def _own_question(form: Form | None, link_id: str) -> dict[str, Any] | None:
    """The question about a fact the server's ``form`` asks a user (not one the server fills), or None."""
    item = form.item(link_id) if form is not None and link_id in FACTS and link_id not in SERVER_ONLY else None
    return None if item is None or item.get("readOnly") else item


def _contained_form(response: Mapping[str, Any]) -> Mapping[str, Any]:
    reference = response.get("questionnaire")
    if not isinstance(reference, str) or not reference.startswith("#"):
        raise FhirError(400, "questionnaire must reference the contained Questionnaire ('#id')",
                             "QuestionnaireResponse.questionnaire")
    for resource in as_list(response.get("contained")):
        if isinstance(resource, dict) and resource.get("resourceType") == "Questionnaire" \
                and resource.get("id") == reference[1:]:
            return resource
    raise FhirError(400, f"no contained Questionnaire with id '{reference[1:]}'", "QuestionnaireResponse.contained")


def next_question(response: Any, forms: Catalogue, ruleset: engine.RuleSet, keys: Keyring,
                  decided: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """``$next-question``: the response with the next questions, or completed with the decision
    (also appended to ``decided``), in the DTR version its signed context names. Raises FhirError:
    400 when it is not a valid R4 QuestionnaireResponse or an answer does not fit its item, 422
    when it is not signed with ``keys`` or changed what the server signed. A response with no
    items yet (the first call, made the SDC way) starts from the facts the server signed."""
    form, answers, version, signed = verified(response, forms, keys)
    decision = decide(ruleset, form, answers.facts())
    if decided is not None:
        decided.append(decision)
    ties = envelope(version, signed.context.coverage, signed.context.orders, signed.context.subject,
                    [use.rsplit("|", 1)[-1] for use in signed.context.uses])
    return page(form, answers, decision, ties, forms.base, ruleset.digest, keys, version, signed, response)


def verified(response: Any, forms: Catalogue, keys: Keyring) -> tuple[Form, Answers, DtrVersion, Signed]:
    """The form, answers, DTR version and signed context of a response covreq signed, checked
    against what it signed (``$next-question``; PAS reads a completed one the same way). Raises
    FhirError as :func:`next_question` says."""
    if not isinstance(response, dict) or response.get("resourceType") != "QuestionnaireResponse":
        raise FhirError(400, "expected a QuestionnaireResponse", "questionnaire-response")
    broken = r4.problems(response, "QuestionnaireResponse")
    if broken:
        raise FhirError(400, r4.describe(broken), broken[0].path)
    contained = _contained_form(response)
    signed = keys.open(response)
    version = VERSIONS.get(signed.context.version)
    if version is None:
        raise FhirError(422, f"the signed context names DTR version {signed.context.version[:16]!r}, which this "
                             "server does not serve: package the order again", CONTEXT_EXPRESSION)
    form = next((found for found in map(forms.by_canonical, signed.context.form) if found), None)
    if form is None:
        raise FhirError(404, f"the contained Questionnaire derives from no form of this rule set "
                             f"({', '.join(signed.context.form) or 'no derivedFrom'})",
                             "QuestionnaireResponse.contained.derivedFrom")
    answers = read_answers(response, contained, version, form)
    if not response.get("item"):
        answers.known = dict(signed.context.known)
    check_context(signed.context, context_of(response, contained, answers, version), answers.given)
    return form, answers, version, signed
