"""Every construct of the condition language (docs/conditions.md), not only those the bundled
rules use, translated to CQL and run as ELM by cql-execution: a tree of small policies, one per
construct, answers as the engine does on random facts (unknowns included), and the reference
translator's ELM of its CQL text answers as the generated ELM."""
from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from cql_engine import run_elm, translate
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from test_dtr_cql import FROM_RECORD, assert_agrees, record

import engine
from service.dtr.catalogue import Catalogue
from service.dtr.library import build_library
from service.dtr.questionnaire import Form

#: One condition per construct: sets, wildcards, ranges, dates and their shifts, ages, known(),
#: facts compared with facts, open and closed sets of codes, normalization of given text.
CONDITIONS = [
    'place_of_service not in {"19", "22"}',
    'type_of_bill in {"13*"} or place_of_service in {"19", "22"}',
    "other_codes overlaps {64612, 64615}",
    "code in {J0585-J0588} and not other_codes overlaps {64612, 64615}",
    "diagnoses overlaps {G43.701, G43.709, H02.83*}",
    "diagnoses overlaps {M54.50-M54.59}",
    'date_of_service >= 2021-07-17 or (date_of_service >= 2020-03-20 and state in {"IL", "MO"})',
    "patient.age < 18 and known(diagnoses)",
    "patient.age in {65, 66} or patient.age >= 80",
    'modifiers contains "RA" and date_of_service < 2024-06-02',
    'provider.exemptions contains "x-pa"',
    "date_of_service <= patient.birth_date + 21 years",
    "date_of_service - 2 weeks >= 2024-02-29 - 1 month",
    'units > 1 or stage == "trial"',
    'request_codes overlaps {64616} and not (request_codes overlaps {64612, 64615})',
    'patient.sex == "female" and provider.network != "out"',
    "other_codes contains code",
    "trial_place_of_service == place_of_service",
    'not known(patient.sex) or plan == "gold"',
    "known(patient.age) and not known(state)",
    # text that would end a CQL string or identifier, or its line, stays text
    'plan == "it\'s \\"gold\\" */ define" or stage in {"\\\\", "x\'y"}',
]


def _policy(index: int) -> str:
    """A policy whose first rule tests construct ``index`` and owes an item when the next holds."""
    when = json.dumps(CONDITIONS[index])
    other = json.dumps(CONDITIONS[(index + 1) % len(CONDITIONS)])
    third = json.dumps(CONDITIONS[(index + 2) % len(CONDITIONS)])
    return f"""id: construct-{index}
title: Construct {index}
payer: testpayer
version: "1"
effective: 2015-01-01
source: {{url: "https://example.org/{index}", citation: test}}
codes: ["{10000 + index}"]
rules:
  - id: tested
    when: {when}
    pa_needed: auth-needed
    documentation: [{{id: always}}, {{id: sometimes, when: {other}}}]
  - id: next
    when: {third}
    pa_needed: no-auth
    covered: not-covered
    documentation: [{{id: sometimes, when: {when}}}]
default:
  pa_needed: no-auth
  documentation: [{{id: later, when: {other}}}]
documentation:
  always: {{text: Always, kind: clinical}}
  sometimes: {{text: Sometimes, kind: admin}}
  later: {{text: Later, kind: patient}}
"""


@pytest.fixture(scope="module")
def forms(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Form]:
    tree = tmp_path_factory.mktemp("constructs")
    (tree / "testpayer").mkdir()
    (tree / "testpayer" / "_payer.yaml").write_text(  # the plans the constructs test, hostile quoting included
        "payer: testpayer\ntitle: Test payer\nplans:\n  gold: Gold\n  silver: Silver\n"
        "  'it''s \"gold\" */ define': A plan id quoted every way CQL quotes\n")
    for index in range(len(CONDITIONS)):
        (tree / "testpayer" / f"construct-{index}.yaml").write_text(_policy(index))
    ruleset = engine.load(Path(tree))
    catalogue = Catalogue(ruleset, "http://example.org/fhir")
    return {policy.id: catalogue.form(policy) for policy in ruleset.policy_versions()}


def _dates(low: str, high: str) -> st.SearchStrategy[str]:
    return st.dates(dt.date.fromisoformat(low), dt.date.fromisoformat(high)).map(dt.date.isoformat)


#: Values of each fact, given or not: some the conditions test, some not, some to be normalized.
FACT_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "place_of_service": st.sampled_from(["19", "22", "11"]),
    "trial_place_of_service": st.sampled_from(["19", "22", "11"]),
    "type_of_bill": st.sampled_from(["131", "0131", "13x", "111"]),
    "state": st.sampled_from(["IL", "mo", "CA"]),
    "patient.birth_date": st.one_of(_dates("1930-01-01", "2020-12-31"), st.sampled_from(["2000-02-29", "2003-03-01"])),
    "patient.sex": st.sampled_from(["female", "Male", "other"]),
    "diagnoses": st.lists(st.sampled_from(["G43.701", "H02.831", "H02.83", "M54.50", "m54.59", "M54.6", "Z00.00"]),
                          min_size=1, max_size=3, unique=True),
    "provider.network": st.sampled_from(["in", "out"]),
    "provider.exemptions": st.lists(st.sampled_from(["x-pa", "y-pa"]), min_size=1, max_size=2, unique=True),
    "modifiers": st.lists(st.sampled_from(["RA", "ra", "59"]), min_size=1, max_size=2, unique=True),
    "units": st.sampled_from([0.5, 1.0, 2.0]),
    "stage": st.sampled_from(["trial", "TRIAL", "permanent", "\\", "x'y"]),
    "other_codes": st.lists(st.sampled_from(["64612", "64615", "64616", "99213", "J0585"]), min_size=1, max_size=3,
                            unique=True),
    "order_complete": st.booleans(),
    "plan": st.sampled_from(["gold", "silver", 'it\'s "gold" */ define']),
}


@st.composite
def constructs(draw: st.DrawFn, forms: dict[str, Form]) -> tuple[Form, dict[str, Any], dict[str, Any]]:
    form = forms[draw(st.sampled_from(sorted(forms)))]
    day = draw(st.one_of(_dates("2019-01-01", "2025-12-31"), _dates("2024-01-25", "2024-03-20"),
                         st.sampled_from(["2020-03-20", "2021-07-16", "2021-07-17", "2024-06-01", "2024-06-02"])))
    facts: dict[str, Any] = {"code": draw(st.sampled_from(["J0585", "J0588", "J0589", "15823", "64612"])),
                             "date_of_service": day}
    facts.update({name: draw(values) for name, values in FACT_VALUES.items() if draw(st.booleans())})
    if draw(st.booleans()):  # born about 21 years (or 18, 65 years) before the date of service
        years, shift = draw(st.sampled_from([18, 21, 65])), draw(st.integers(-2, 2))
        born = dt.date.fromisoformat(day)
        born = born.replace(year=born.year - years, day=min(born.day, 28)) + dt.timedelta(days=shift)
        facts["patient.birth_date"] = born.isoformat()
    in_record = {name for name in FROM_RECORD if name in facts and draw(st.booleans())}
    case = {"library": form.policy.id,
            **record(facts, in_record, draw(st.booleans()), {n: v for n, v in facts.items() if n not in in_record})}
    return form, facts, case


def test_every_construct_answers_as_the_engine_does_and_its_cql_as_its_elm(forms: dict[str, Form]) -> None:
    built = {policy_id: build_library("http://example.org/fhir", form.policy, "id") for policy_id, form in forms.items()}
    libraries = {key: library.elm for key, library in built.items()}
    translated = translate({key: library.cql for key, library in built.items()})
    assert {key: found["errors"] for key, found in translated.items()} == {key: [] for key in built}
    reference = {key: found["elm"] for key, found in translated.items()}

    @settings(max_examples=6, deadline=None, phases=[Phase.explicit, Phase.reuse, Phase.generate],
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(st.lists(constructs(forms), min_size=60, max_size=80))
    def check(batch: list[tuple[Form, dict[str, Any], dict[str, Any]]]) -> None:
        used = {case["library"] for _form, _facts, case in batch}
        results = run_elm({key: libraries[key] for key in used}, [case for _form, _facts, case in batch])
        decided = sum(assert_agrees(form, facts, found) for (form, facts, _case), found in zip(batch, results))
        assert decided > len(batch) // 3  # most cases are requests the engine can read
        theirs = run_elm({key: reference[key] for key in used}, [case for _form, _facts, case in batch])
        for (_form, facts, case), mine, translated_found in zip(batch, results, theirs):
            assert {name: translated_found.get(name) for name in mine} == mine, (case["library"], facts)

    check()
