"""Hostile input to the DTR operations: any JSON in place of any part of a valid request is a 4xx
OperationOutcome or an answer, never a 500."""
from __future__ import annotations

import copy
from typing import Any

import pytest
from dtr_helpers import bundles, package_request, response_of, service_request
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
                    max_leaves=8)


def _paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in a JSON value, as keys and indexes from the top."""
    found = [path]
    if isinstance(value, dict):
        found += [p for k, v in value.items() for p in _paths(v, (*path, k))]
    elif isinstance(value, list):
        found += [p for i, v in enumerate(value) for p in _paths(v, (*path, i))]
    return found


def _replace(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    """A copy of ``value`` with ``new`` at ``path``."""
    if not path:
        return new
    result = copy.deepcopy(value)
    target = result
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = new
    return result


@pytest.fixture(scope="module")
def start(module_client: TestClient) -> dict[str, Any]:
    """A valid adaptive response to mutate."""
    return response_of(bundles(module_client.post("/fhir/Questionnaire/$questionnaire-package",
                                           json=package_request(service_request())).json())[0])


def _checked(reply: Any) -> None:
    """An answer, or a 4xx OperationOutcome."""
    assert reply.status_code < 500, reply.text
    if reply.status_code >= 400:
        assert reply.json()["resourceType"] == "OperationOutcome"


@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.data(), JSON)
def test_any_part_of_a_next_question_request_replaced_is_never_a_500(module_client: TestClient, start: dict[str, Any],
                                                                     data: st.DataObject, new: Any) -> None:
    path = data.draw(st.sampled_from(_paths(start)))
    _checked(module_client.post("/fhir/Questionnaire/$next-question", json=_replace(start, path, new)))


@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.data(), JSON)
def test_any_part_of_a_package_request_replaced_is_never_a_500(module_client: TestClient, data: st.DataObject,
                                                               new: Any) -> None:
    body = package_request(service_request())
    path = data.draw(st.sampled_from(_paths(body)))
    _checked(module_client.post("/fhir/Questionnaire/$questionnaire-package", json=_replace(body, path, new)))


_LOGGED = {"resourceType": "Parameters", "parameter": [
    {"name": "questionnaire", "valueCanonical": "http://testserver/fhir/Questionnaire/x|1"},
    {"name": "operationOutcome", "resource": {"resourceType": "OperationOutcome", "issue": [
        {"severity": "error", "code": "processing", "diagnostics": "failed"}]}}]}
_EXPAND = {"resourceType": "Parameters", "parameter": [
    {"name": "url", "valueUri": "http://testserver/fhir/ValueSet/medicare-opd-blepharoplasty.place_of_service"},
    {"name": "filter", "valueString": "2"}, {"name": "count", "valueInteger": 1}]}


@pytest.mark.parametrize("path, body", [("/fhir/Questionnaire/$log-questionnaire-errors", _LOGGED),
                                        ("/fhir/ValueSet/$expand", _EXPAND)], ids=["log-errors", "expand"])
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data(), new=JSON)
def test_any_part_of_a_log_or_expand_request_replaced_is_never_a_500(module_client: TestClient, path: str,
                                                                    body: dict[str, Any], data: st.DataObject,
                                                                    new: Any) -> None:
    where = data.draw(st.sampled_from(_paths(body)))
    _checked(module_client.post(path, json=_replace(body, where, new)))


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(query=st.dictionaries(st.sampled_from(["url", "valueSetVersion", "filter", "offset", "count", "version"]),
                             st.text(max_size=12), max_size=4))
def test_any_value_set_query_is_never_a_500(module_client: TestClient, query: dict[str, str]) -> None:
    for path in ("/fhir/ValueSet", "/fhir/ValueSet/$expand",
                 "/fhir/ValueSet/medicare-opd-blepharoplasty.place-of-service.2022-01-07/$expand"):
        _checked(module_client.get(path, params=query))
