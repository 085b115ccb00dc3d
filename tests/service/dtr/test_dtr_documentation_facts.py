"""DTR forms ask what decides the documentation owed, not only what decides prior authorization, and
offer the payer's plans with their titles."""
from __future__ import annotations

from typing import Any

import pytest
from dtr_helpers import BUNDLED_RULES, ICD10CM, answer, asked, form_of, items

import engine
from service.dtr.adaptive import Answers, decide, envelope, next_question, page
from service.dtr.catalogue import Catalogue
from service.dtr.questionnaire import Form
from service.dtr.signing import Keyring
from service.dtr.versions import VERSIONS
from service.fhir.outcome import FhirError

RULESET = engine.load(BUNDLED_RULES)
FORMS = Catalogue(RULESET, "http://example.org/fhir")
KEYS = Keyring.ephemeral()
#: 64612 with its toxin on a complete order in a hospital OPD: PA needed, two documents owed by diagnosis.
ORDER = {"code": "64612", "date_of_service": "2024-03-14", "place_of_service": "22", "other_codes": ["J0585"],
         "order_complete": True}


def form(policy_id: str) -> Form:
    return FORMS.form(next(p for p in RULESET.policy_versions() if p.id == policy_id))


def start(version: str, known: dict[str, Any]) -> dict[str, Any]:
    """The first adaptive response of the botulinum-toxin form for an order telling ``known``."""
    botox = form("medicare-opd-botulinum-toxin")
    ties = envelope(VERSIONS[version], ["Coverage/cov-1"], ["ServiceRequest/sr-1"], "Patient/pat-1", ["withpa"])
    return page(botox, Answers(known=dict(known)), decide(RULESET, botox, known), ties, FORMS.base, RULESET.digest,
                KEYS, VERSIONS[version])


def docs_of(response: dict[str, Any]) -> dict[str, bool]:
    """The documentation items a response's form lists, with whether each is required."""
    return {i["linkId"].removeprefix("documentation."): i["required"] for i in items(form_of(response), "documentation")}


@pytest.mark.parametrize("version", list(VERSIONS))
def test_the_adaptive_form_asks_the_diagnoses_a_pending_documentation_condition_reads(version: str) -> None:
    """Regression (issue 27, item 8): with PA decided, the form listed the migraine and dystonia
    documents "when" a diagnosis but never asked the diagnoses, and an answer to them was refused
    (400, "not an item of the contained Questionnaire")."""
    first = start(version, ORDER)
    assert first["status"] == "in-progress" and asked(first)[0] == "diagnoses"
    assert [i["linkId"] for i in items(form_of(first), "facts")] == ["diagnoses"]
    assert docs_of(first)["chronic-migraine-history"] is False and docs_of(first)["dystonia-function"] is False
    migraine = next_question(answer(first, "diagnoses", {"valueCoding": {"system": ICD10CM, "code": "G43.709"}}),
                             FORMS, RULESET, KEYS)
    owed = docs_of(migraine)
    assert owed["chronic-migraine-history"] is True and "dystonia-function" not in owed
    assert "diagnoses" not in asked(migraine)  # answered, and kept in the form with its answer
    assert [i["linkId"] for i in items(form_of(migraine), "facts")] == ["diagnoses"]


@pytest.mark.parametrize("version", list(VERSIONS))
def test_a_diagnosis_the_order_tells_is_not_asked_and_settles_the_documentation(version: str) -> None:
    first = start(version, {**ORDER, "diagnoses": ["G24.5"]})
    assert "diagnoses" not in asked(first)
    assert "chronic-migraine-history" not in docs_of(first) and docs_of(first)["dystonia-function"] is True


def test_the_standard_form_asks_every_fact_a_documentation_condition_reads() -> None:
    botox = form("medicare-opd-botulinum-toxin")
    assert botox.documentation_facts == {"chronic-migraine-history": ("diagnoses",),
                                         "dystonia-function": ("diagnoses",)}
    assert botox.item("diagnoses") is not None
    spinal = form("medicare-opd-spinal-neurostimulators")
    assert spinal.documentation_facts["trial-results"] == ("stage",) and spinal.item("stage") is not None


def test_the_plan_question_offers_the_payers_plans_with_their_titles() -> None:
    """Regression (issue 27, item 9): the plan question offered only the plan the rules test
    (commercial-aso), not the payer's plans."""
    sleep = form("florida-blue-sleep-studies")
    plan = sleep.item("plan")
    assert plan is not None and plan["type"] == "open-choice"
    (value_set,) = [vs for vs in sleep.value_sets if f"{vs['url']}|{vs['version']}" == plan["answerValueSet"]]
    offered = {c["code"]: c["display"] for c in value_set["expansion"]["contains"]}
    assert offered == RULESET.plan_titles("florida-blue")
    assert offered["commercial-aso"] == "Florida Blue self-insured employer plans (administrative services only)"
    assert value_set["compose"]["include"][0]["concept"] == [{"code": c, "display": t} for c, t in offered.items()]


@pytest.mark.parametrize("version", list(VERSIONS))
def test_an_answer_to_a_question_of_the_form_not_yet_asked_is_taken_and_kept_in_the_form(version: str) -> None:
    """A client that shows the standard form may answer one of its questions the page has not asked
    (here the type of bill): taken, not refused as "not an item of the contained Questionnaire"."""
    first = start(version, ORDER)
    assert [q for q in asked(first) if not q.startswith("documentation.")] == ["diagnoses"]
    early = answer(first, "diagnoses", {"valueCoding": {"system": ICD10CM, "code": "G24.5"}})
    group = next(g for g in early["item"] if g["linkId"] == "facts")
    group["item"].append({"linkId": "type_of_bill", "answer": [{"valueString": "131",
                                                                "extension": answer_extension(early)}]})
    reply = next_question(early, FORMS, RULESET, KEYS)
    assert [i["linkId"] for i in items(form_of(reply), "facts")] == ["diagnoses", "type_of_bill"]
    assert docs_of(reply)["dystonia-function"] is True and "chronic-migraine-history" not in docs_of(reply)
    inpatient = next_question(answer(reply, "type_of_bill", {"valueString": "111"}), FORMS, RULESET, KEYS)
    assert inpatient["status"] == "completed" and not docs_of(inpatient)  # an inpatient bill: no PA, as the rules say


def test_an_answer_to_a_fact_the_form_never_asks_is_still_refused() -> None:
    first = answer(start("2.2", ORDER), "diagnoses", {"valueCoding": {"system": ICD10CM, "code": "G24.5"}})
    group = next(g for g in first["item"] if g["linkId"] == "facts")
    group["item"].append({"linkId": "units", "answer": [{"valueDecimal": 2, "extension": answer_extension(first)}]})
    with pytest.raises(FhirError) as refused:
        next_question(first, FORMS, RULESET, KEYS)
    assert refused.value.status == 400 and "'units' is not an item of the contained Questionnaire" in str(refused.value)


def answer_extension(response: dict[str, Any]) -> list[dict[str, Any]]:
    """The information-origin extension the helpers stamp on a person's answer in ``response``."""
    return next(a["extension"] for g in response["item"] if g["linkId"] == "facts" for i in g["item"]
                for a in i["answer"])


@pytest.mark.parametrize("version", list(VERSIONS))
def test_the_adaptive_plan_question_offers_the_payers_plans_and_takes_any_of_them(version: str) -> None:
    sleep = form("florida-blue-sleep-studies")
    known = {"code": "95810", "date_of_service": "2024-03-14"}
    ties = envelope(VERSIONS[version], ["Coverage/cov-1"], ["ServiceRequest/sr-1"], "Patient/pat-1", ["withpa"])
    first = page(sleep, Answers(known=dict(known)), decide(RULESET, sleep, known), ties, FORMS.base, RULESET.digest,
                 KEYS, VERSIONS[version])
    (plan,) = [i for i in items(form_of(first), "facts") if i["linkId"] == "plan"]
    assert plan["answerValueSet"] == sleep.item("plan")["answerValueSet"]  # type: ignore[index]
    hmo = next_question(answer(first, "plan", {"valueCoding": {"code": "commercial-hmo"}}), FORMS, RULESET, KEYS)
    assert "plan" not in asked(hmo) and docs_of(hmo)  # a plan the rules do not name: the program applies
    aso = next_question(answer(first, "plan", {"valueCoding": {"code": "commercial-aso"}}), FORMS, RULESET, KEYS)
    assert aso["status"] == "completed" and not docs_of(aso)
