"""The v1 JSON API, the policy and rule-set endpoints, health, errors and OpenAPI."""
from __future__ import annotations

import json

from pathlib import Path

from hypothesis import HealthCheck, given, settings, strategies as st

BUNDLED_RULES = Path(__file__).resolve().parents[2] / "rules"

EYELID = {"payer": "acme", "date_of_service": "2024-03-14", "place_of_service": "22",
          "services": [{"code": "15823", "system": "CPT"}]}


def test_requirements_answer_field_by_field(client) -> None:
    response = client.post("/v1/requirements", json=EYELID)
    assert response.status_code == 200
    body = response.json()
    assert body["ruleset"] == response.headers["x-covreq-ruleset"]
    assert body["as_of"] == "2024-03-14"
    (decision,) = body["decisions"]
    assert decision["code"] == "15823" and decision["system"] == "CPT"
    assert decision["pa_needed"] == "auth-needed" and decision["covered"] == "covered"
    assert [d["id"] for d in decision["documentation"]] == ["photographs", "patient-attestation"]
    assert decision["info_needed"] == []
    assert decision["reasons"] == ["Eyelid surgery in a facility needs prior authorization."]
    assert decision["policies"] == [{"id": "acme-eyelid-surgery", "title": "Eyelid surgery (test fixture)",
                                     "version": "1", "url": "https://example.org/acme/policies/eyelid-surgery"}]


def test_missing_fact_is_conditional_and_named(client) -> None:
    request = {k: v for k, v in EYELID.items() if k != "place_of_service"}
    (decision,) = client.post("/v1/requirements", json=request).json()["decisions"]
    assert decision["pa_needed"] == "conditional"
    assert decision["info_needed"] == ["place_of_service"]
    assert decision["possible"] == ["auth-needed", "no-auth"]


def test_existing_authorization_satisfies(client) -> None:
    request = {**EYELID, "authorizations": [{"id": "UTN123", "code": "15823", "start": "2024-03-01"}]}
    (decision,) = client.post("/v1/requirements", json=request).json()["decisions"]
    assert decision["pa_needed"] == "satisfied" and decision["authorization"] == "UTN123"


def test_explain_returns_a_trace(client) -> None:
    (decision,) = client.post("/v1/requirements", json={**EYELID, "explain": True}).json()["decisions"]
    assert decision["trace"]


def _error(response, status: int, location: str = "") -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["ruleset"] == response.headers["x-covreq-ruleset"]
    assert body["error"]["status"] == status and body["error"]["location"] == location
    return body["error"]["message"]


def test_contract_violations_are_4xx_with_a_location(client) -> None:
    assert "malformed JSON" in _error(client.post("/v1/requirements", content=b"{"), 400)
    assert "NaN" in _error(client.post("/v1/requirements", content=b'{"payer": NaN}'), 400)
    _error(client.post("/v1/requirements", content=b'{"payer": "\xff"}'), 400)
    _error(client.post("/v1/requirements", json=[EYELID]), 422)
    _error(client.post("/v1/requirements", json={"payer": "acme"}), 422, "services")
    _error(client.post("/v1/requirements", json={**EYELID, "services": [{"code": "1"}]}), 422,
           "services[0].code")
    assert "unknown payer" in _error(client.post("/v1/requirements", json={**EYELID, "payer": "nobody"}),
                                     422, "payer")
    _error(client.post("/v1/requirements", json={**EYELID, "date_of_service": "14/03/2024"}), 422,
           "date_of_service")


def test_bodies_over_the_limit_are_refused(make_client) -> None:
    small = make_client(max_body_bytes=64)
    assert "larger than 64 bytes" in _error(small.post("/v1/requirements", json={**EYELID, "pad": "x" * 64}), 413)

    def chunks():  # no Content-Length: the limit holds while the body streams in
        yield b'{"payer": "acme", "pad": "'
        yield b"x" * 100
        yield b'"}'
    _error(small.post("/v1/requirements", content=chunks()), 413)
    assert small.post("/v1/requirements", json={"payer": "acme", "services": [{"code": "15823"}]}).status_code == 200


def test_policies_and_one_policy(client) -> None:
    listing = client.get("/v1/policies").json()
    assert [p["id"] for p in listing["policies"]] == sorted(p["id"] for p in listing["policies"])
    assert len(listing["policies"]) == 5
    one = client.get("/v1/policies/acme-breast-imaging")
    assert one.status_code == 200
    policy = one.json()["policy"]
    assert policy["payer"] == "acme" and policy["title"] == "Diagnostic breast imaging (test fixture)"
    (version,) = policy["versions"]
    assert version["url"] == "https://example.org/acme/policies/breast-imaging"
    assert version["effective"] == "2015-01-01" and version["file"].endswith("breast-imaging.yaml")
    _error(client.get("/v1/policies/no-such-policy"), 404, "id")


def test_ruleset_health_and_readiness(client) -> None:
    info = client.get("/v1/ruleset").json()
    assert info["policies"] == 5 and info["payers"] == ["acme"]
    assert info["source"].endswith("fixtures/rules") and info["last_reload_error"] is None
    assert info["loaded_at"][:4].isdigit()
    assert client.get("/healthz").json() == {"status": "ok", "ruleset": info["ruleset"]}
    assert client.get("/readyz").json() == {"status": "ready", "ruleset": info["ruleset"],
                                            "last_reload_error": None}


def test_unknown_routes_and_methods_keep_the_error_shape(client) -> None:
    _error(client.get("/v2/requirements"), 404)
    _error(client.get("/v1/requirements"), 405)


def test_openapi_and_docs(client) -> None:
    spec = client.get("/openapi.json").json()
    assert {"/v1/requirements", "/v1/policies", "/v1/policies/{policy_id}", "/v1/ruleset", "/healthz",
            "/readyz", "/admin/reload", "/cds-services", "/cds-services/{service_id}"} <= set(spec["paths"])
    example = spec["paths"]["/v1/requirements"]["post"]["requestBody"]["content"]["application/json"]["example"]
    assert example["payer"] == "medicare"
    assert client.get("/docs").status_code == 200


def test_bundled_rules_answer_a_medicare_opd_request(make_client) -> None:
    bundled = make_client(BUNDLED_RULES)
    request = {"payer": "medicare", "plan": "original-medicare-ffs", "date_of_service": "2023-03-14",
               "place_of_service": "22", "services": [{"code": "15823"}]}
    (decision,) = bundled.post("/v1/requirements", json=request).json()["decisions"]
    assert decision["pa_needed"] == "auth-needed"
    assert decision["policies"][0]["id"] == "medicare-opd-blepharoplasty"


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                    max_leaves=12)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=JSON, path=st.sampled_from(["/v1/requirements", "/cds-services/order-sign-crd",
                                        "/cds-services/order-dispatch-crd", "/cds-services/appointment-book-crd"]))
def test_arbitrary_json_never_makes_a_5xx(client, body, path: str) -> None:
    assert client.post(path, content=json.dumps(body)).status_code < 500


def _mutations(document):
    """Every (container, key) pair inside a JSON document."""
    if isinstance(document, dict):
        for key, item in document.items():
            yield document, key
            yield from _mutations(item)
    elif isinstance(document, list):
        for number, item in enumerate(document):
            yield document, number
            yield from _mutations(item)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_a_crd_request_with_any_one_field_replaced_never_makes_a_5xx(client, anchor, data) -> None:
    request = anchor("CRDServiceRequest.json")
    places = list(_mutations(request))
    container, key = data.draw(st.sampled_from(places))
    container[key] = data.draw(JSON)
    assert client.post("/cds-services/order-sign-crd", json=request).status_code < 500


def test_a_misspelt_field_gets_a_did_you_mean(client) -> None:
    """Regression (issue 15, item 11): an unknown field such as `plase_of_service` got no suggestion."""
    body = {key if key != "place_of_service" else "plase_of_service": value for key, value in EYELID.items()}
    message = _error(client.post("/v1/requirements", json=body), 422, "plase_of_service")
    assert message.endswith("unknown field; did you mean 'place_of_service'?")
    line = {**EYELID, "services": [{"code": "15823", "unitz": 2}]}
    assert _error(client.post("/v1/requirements", json=line), 422, "services[0].unitz").endswith(
        "did you mean 'units'?")
    assert "expected one of" in _error(client.post("/v1/requirements", json={**EYELID, "zzz": 1}), 422, "zzz")


def test_a_document_owed_for_some_diagnoses_says_which_in_plain_english_and_explain_adds_the_rule_text(
        make_client) -> None:
    client = make_client(rules=BUNDLED_RULES)
    request = {"payer": "medicare", "date_of_service": "2024-03-14", "place_of_service": "22",
               "services": [{"code": "64612"}, {"code": "J0585"}]}
    for explain in (False, True):
        decision = client.post("/v1/requirements", json={**request, "explain": explain}).json()["decisions"][0]
        (migraine,) = [d for d in decision["documentation"] if d["id"] == "chronic-migraine-history"]
        assert migraine["required_when"] == "when a diagnosis is a chronic migraine code (G43.7*)"
        assert migraine.get("condition") == ("diagnoses overlaps chronic_migraine" if explain else None)
