"""The attacker's suite, HTTP bodies: whatever a caller sends to a decision endpoint ends in a
clean 4xx naming the field at fault, or an answer, and never grows the service without bound.

Regression tests are named after the reports of issue 11 they close.
"""
from __future__ import annotations

import json
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import engine
from engine.evaluation.memo import ENTRY_OVERHEAD, AnswerCache, fingerprint
from engine.evaluation.request import MAX_TEXT

FIXTURE_RULES = Path(__file__).resolve().parent / "fixtures" / "rules"
V1 = "/v1/requirements"
CDS = "/cds-services/order-sign-crd"
REQUEST = {"payer": "acme", "date_of_service": "2024-03-14", "place_of_service": "22",
           "services": [{"code": "15823"}]}
BODIES = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

#: A request with every field of the v1 contract set (docs/api.md).
FULL = {"payer": "acme", "plan": "acme-gold", "date_of_service": "2024-03-14", "place_of_service": "22",
        "type_of_bill": "0131", "state": "NY", "request_id": "visit-1",
        "patient": {"birth_date": "1950-01-01", "sex": "female"}, "diagnoses": ["H02.831"],
        "provider": {"npi": "1234567893", "specialty": "ophthalmology", "network": "in", "exemptions": ["gold-card"]},
        "services": [{"code": "15823", "system": "CPT", "stage": "trial", "modifiers": ["50"],
                      "trial_place_of_service": "22"}],
        "authorizations": [{"id": "A1", "code": "15823", "start": "2024-01-01"}]}
#: Every free-text field of a v1 request: its path in ``FULL`` and its name in errors.
TEXT_FIELDS = [
    (("payer",), "payer"), (("plan",), "plan"), (("place_of_service",), "place_of_service"),
    (("type_of_bill",), "type_of_bill"), (("state",), "state"), (("request_id",), "request_id"),
    (("date_of_service",), "date_of_service"), (("patient", "sex"), "patient.sex"),
    (("patient", "birth_date"), "patient.birth_date"), (("diagnoses", 0), "diagnoses[0]"),
    (("provider", "npi"), "provider.npi"), (("provider", "specialty"), "provider.specialty"),
    (("provider", "network"), "provider.network"), (("provider", "exemptions", 0), "provider.exemptions[0]"),
    (("services", 0, "code"), "services[0].code"), (("services", 0, "system"), "services[0].system"),
    (("services", 0, "stage"), "services[0].stage"), (("services", 0, "modifiers", 0), "services[0].modifiers[0]"),
    (("services", 0, "trial_place_of_service"), "services[0].trial_place_of_service"),
    (("authorizations", 0, "id"), "authorizations[0].id"), (("authorizations", 0, "code"), "authorizations[0].code"),
    (("authorizations", 0, "start"), "authorizations[0].start"),
]
MARK = "MARK-7f3a"


def with_value(path: tuple[object, ...], value: Any) -> dict[str, Any]:
    """``FULL`` with ``value`` at ``path``."""
    body: Any = json.loads(json.dumps(FULL))
    node = body
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return body  # type: ignore[no-any-return]


def raw(body: dict[str, Any], marker: str, replacement: str) -> bytes:
    """``body`` as JSON with the string ``marker`` replaced by raw JSON text (e.g. an escape)."""
    return json.dumps(body).replace(json.dumps(marker), replacement).encode()


def v1_error(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    return response.json()["error"]  # type: ignore[no-any-return]


# 1. The answer cache and the length of free text --------------------------------------------------

def test_regression_answer_cache_grows_without_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unique requests with big (allowed) keys stay within the cache's byte budget, keys counted."""
    budget = 2_000_000
    monkeypatch.setattr(engine.evaluation.ruleset, "ANSWER_CACHE_BYTES", budget)
    rules = engine.load(FIXTURE_RULES)
    filler = ["Z" + "9" * (MAX_TEXT - 1)] * 120  # about 31 KB of fingerprint per request
    tracemalloc.start()
    try:
        first = {**REQUEST, "diagnoses": filler}
        rules.evaluate(first, remember=fingerprint(first))
        before = tracemalloc.get_traced_memory()[0]
        for n in range(400):  # 12 MB of distinct keys: six times the budget
            body = {**REQUEST, "request_id": f"visit-{n}", "diagnoses": filler}
            rules.evaluate(body, remember=fingerprint(body))
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    info = rules.answer_cache_info()
    assert info["bytes"] <= budget and 0 < info["entries"] < 400
    assert grown < budget * 1.25, f"the cache holds {grown} bytes for a budget of {budget}"


def test_the_answer_cache_charges_each_entry_its_key_answer_and_overhead() -> None:
    cache = AnswerCache(max_bytes=10_000)
    cache.put(b"k" * 1000, {"answer": 1})
    cost = cache.info()["bytes"]
    assert cost > 1000 + ENTRY_OVERHEAD
    cache.put(b"big" * 4000, {"answer": 2})  # a key larger than the whole budget is not kept
    assert cache.get(b"big" * 4000) is None and cache.info()["bytes"] == cost


def test_regression_request_id_has_no_length_limit(client) -> None:
    error = v1_error(client.post(V1, json={**REQUEST, "request_id": "x" * 65_536}), 422)
    assert error["location"] == "request_id"
    assert error["message"] == f"is 65536 characters long; the limit is {MAX_TEXT}"
    assert client.post(V1, json={**REQUEST, "request_id": "visit-42"}).status_code == 200
    assert v1_error(client.post(V1, json={**REQUEST, "request_id": 42}), 422)["location"] == "request_id"


@pytest.mark.parametrize("path, name", TEXT_FIELDS, ids=[name for _, name in TEXT_FIELDS])
def test_every_free_text_field_is_capped_with_a_422_naming_it(client, path: tuple[object, ...], name: str) -> None:
    response = client.post(V1, json=with_value(path, "9" * (MAX_TEXT + 1)))
    error = v1_error(response, 422)
    assert error["location"] == name
    assert error["message"] == f"is {MAX_TEXT + 1} characters long; the limit is {MAX_TEXT}"
    assert "9" * 64 not in response.text, "the value must not be echoed"


@BODIES
@given(field=st.sampled_from(TEXT_FIELDS), extra=st.integers(1, 100_000))
def test_text_past_the_limit_is_refused_whatever_its_length(client, field: tuple[Any, str], extra: int) -> None:
    path, name = field
    assert v1_error(client.post(V1, json=with_value(path, "a" * (MAX_TEXT + extra))), 422)["location"] == name


# 3. Lone surrogates -------------------------------------------------------------------------------

@pytest.mark.parametrize("path, name", TEXT_FIELDS, ids=[name for _, name in TEXT_FIELDS])
def test_regression_lone_surrogates_are_a_500(client, path: tuple[object, ...], name: str) -> None:
    body = raw(with_value(path, MARK), MARK, '"ok\\ud800"')
    error = v1_error(client.post(V1, content=body), 400)
    assert error["location"] == name
    assert error["message"] == (f"malformed JSON: the text of {name} holds a lone UTF-16 surrogate "
                                "(\\ud800-\\udfff), which is not Unicode text")


def test_a_lone_surrogate_in_a_field_name_is_a_400_naming_it(client) -> None:
    error = v1_error(client.post(V1, content=raw({**REQUEST, MARK: 1}, MARK, '"\\udfff"')), 400)
    assert error["location"] == "\\udfff" and error["message"].startswith("malformed JSON: the name of \\udfff")


def test_a_surrogate_pair_is_text_and_an_escaped_backslash_is_not_an_escape(client) -> None:
    paired = raw({**REQUEST, "request_id": MARK}, MARK, '"visit-\\ud83d\\ude00"')
    assert client.post(V1, content=paired).status_code == 200
    escaped = raw({**REQUEST, "request_id": MARK}, MARK, '"visit-\\\\ud800"')
    assert client.post(V1, content=escaped).status_code == 200


@pytest.mark.parametrize("where, expression", [
    ("hookInstance", "hookInstance"), ("patientId", "context.patientId"),
    ("code", "context.draftOrders.entry[0].resource.code.coding[0].code"),
])
def test_regression_lone_surrogates_in_a_cds_body_are_a_400(client, where: str, expression: str) -> None:
    order = {"resourceType": "ServiceRequest", "id": "1",
             "code": {"coding": [{"system": "http://www.ama-assn.org/go/cpt", "code": MARK if where == "code" else "77061"}]}}
    body = {"hook": "order-sign", "hookInstance": MARK if where == "hookInstance" else "d1577c69",
            "context": {"patientId": MARK if where == "patientId" else "p1",
                        "draftOrders": {"resourceType": "Bundle", "entry": [{"resource": order}]}}}
    response = client.post(CDS, content=raw(body, MARK, '"\\uDBFF"'))
    assert response.status_code == 400, response.text
    (issue,) = response.json()["issue"]
    assert issue["expression"] == [expression] and "lone UTF-16 surrogate" in issue["diagnostics"]


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
                           max_leaves=12)


def _paths(value: Any, path: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    """Paths of every string in a JSON value."""
    if isinstance(value, str):
        return [path]
    if isinstance(value, dict):
        return [p for key, item in value.items() for p in _paths(item, (*path, key))]
    if isinstance(value, list):
        return [p for i, item in enumerate(value) for p in _paths(item, (*path, i))]
    return []


def _name(path: tuple[object, ...]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


@BODIES
@given(extra=json_values, data=st.data(), surrogate=st.integers(0xD800, 0xDFFF))
def test_a_lone_surrogate_anywhere_in_a_body_is_a_400_naming_its_field(client, extra: Any, data: Any,
                                                                       surrogate: int) -> None:
    body = json.loads(json.dumps({**REQUEST, "explain": False, "zz": extra}))
    candidates = [p for p in _paths(body) if all(isinstance(k, int) or k.isascii() and k.isidentifier() for k in p)]
    path = data.draw(st.sampled_from(candidates))
    node: Any = body
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = MARK
    content = raw(body, MARK, f'"\\u{surrogate:04x}"')
    for endpoint in (V1, CDS):
        response = client.post(endpoint, content=content)
        assert response.status_code == 400, response.text
        located = (response.json()["error"]["location"] if endpoint == V1
                   else response.json()["issue"][0]["expression"][0])
        assert located == _name(path)


@BODIES
@given(text=st.text(st.characters() | st.integers(0xD800, 0xDFFF).map(chr), max_size=20),
       field=st.sampled_from(TEXT_FIELDS))
def test_any_text_in_any_field_is_answered_or_refused_never_a_5xx(client, text: str, field: tuple[Any, str]) -> None:
    response = client.post(V1, content=json.dumps(with_value(field[0], text)).encode())
    assert response.status_code in (200, 400, 422), response.text
    if response.status_code != 200:
        assert response.json()["error"]["location"] == field[1]


# 9. Smaller reports -------------------------------------------------------------------------------

@pytest.mark.parametrize("day", ["2024-W11-4", "20240314", "2024-074", "2024-3-14", "２０２４-03-14", "2024-03-14T00:00"])
@pytest.mark.parametrize("field", ["date_of_service", "patient.birth_date", "authorizations[0].start"])
def test_regression_dates_such_as_2024_w11_4_accepted_as_yyyy_mm_dd(client, day: str, field: str) -> None:
    path = {"date_of_service": ("date_of_service",), "patient.birth_date": ("patient", "birth_date"),
            "authorizations[0].start": ("authorizations", 0, "start")}[field]
    error = v1_error(client.post(V1, json=with_value(path, day)), 422)
    assert error["location"] == field and "is not a date written YYYY-MM-DD" in error["message"]


def test_regression_policy_ids_of_60_kb_are_echoed(client) -> None:
    response = client.get("/v1/policies/" + "x" * 60_000)
    assert response.status_code == 404 and len(response.content) < 600


def test_regression_unknown_json_key_names_copied_into_the_audit_file_at_any_size(client, tmp_path: Path) -> None:
    client.post(V1, json={**REQUEST, "k" * MAX_TEXT: 1})
    client.post(V1, json={**REQUEST, "k" * 100_000: 1})
    client.post(CDS, json={"hook": "order-sign", "hookInstance": "h" * 100_000, "context": {"nope": "k" * 100_000}})
    for line in (tmp_path / "audit.jsonl").read_text().splitlines():
        record = json.loads(line)
        assert all(len(str(value)) <= 256 for value in record.values() if not isinstance(value, (dict, list)))
        assert len(line) < 1000
