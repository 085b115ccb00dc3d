"""PAS sits under the /fhir SMART Backend Services like DTR: no token, 401; $submit needs ``c`` on
Claim (it stores a request), $inquire ``r``; a token for forms only is refused (403)."""
from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any, Callable

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi.testclient import TestClient
from pas_helpers import adapted, inquiry

FHIR_BASE = "https://payer.example/fhir"
TOKEN_URL = FHIR_BASE + "/auth/token"


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture()
def smart_client(make_pas_client: Callable[..., TestClient], tmp_path: Path, key: rsa.RSAPrivateKey) -> TestClient:
    jwk = {**json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key())), "kid": "k1", "alg": "RS384"}
    registration = tmp_path / "smart-clients.yaml"
    registration.write_text(f"""clients:
  - client_id: pas-client
    jwks: {json.dumps({"keys": [jwk]})}
    scopes: [system/Claim.cr]
  - client_id: forms-only
    jwks: {json.dumps({"keys": [jwk]})}
    scopes: [system/Questionnaire.rs]
""")
    secret = tmp_path / "token.key"
    secret.write_text("covreq-test-access-token-secret-0123456789\n")
    return make_pas_client(fhir_base=FHIR_BASE, smart_clients=registration, smart_token_key=secret)


def token(client: TestClient, key: rsa.RSAPrivateKey, client_id: str, scope: str) -> dict[str, str]:
    now = int(time.time())
    signed = jwt.encode({"iss": client_id, "sub": client_id, "aud": TOKEN_URL, "exp": now + 240, "jti": uuid.uuid4().hex},
                        key, algorithm="RS384", headers={"typ": "JWT", "kid": "k1"})
    reply = client.post("/fhir/auth/token", data={
        "grant_type": "client_credentials", "client_assertion": signed, "scope": scope,
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"})
    assert reply.status_code == 200, reply.text
    return {"Authorization": f"Bearer {reply.json()['access_token']}"}


def test_pas_needs_a_token_with_claim_scopes(smart_client: TestClient, key: rsa.RSAPrivateKey) -> None:
    assert smart_client.post("/fhir/Claim/$submit", json=adapted()).status_code == 401
    forms = token(smart_client, key, "forms-only", "system/Questionnaire.rs")
    refused = smart_client.post("/fhir/Claim/$submit", json=adapted(), headers=forms)
    assert refused.status_code == 403 and refused.json()["resourceType"] == "OperationOutcome"
    reading = token(smart_client, key, "pas-client", "system/Claim.r")
    assert smart_client.post("/fhir/Claim/$submit", json=adapted(), headers=reading).status_code == 403
    writing = token(smart_client, key, "pas-client", "system/Claim.cr")
    assert smart_client.post("/fhir/Claim/$submit", json=adapted(), headers=writing).status_code == 200
    assert smart_client.post("/fhir/Claim/$inquire", json=inquiry(), headers=reading).status_code == 200
    assert smart_client.post("/fhir/Claim/$inquire", json=inquiry(), headers=forms).status_code == 403


def test_the_capability_statement_still_describes_smart_with_the_pas_operations(smart_client: TestClient) -> None:
    statement = smart_client.get("/fhir/metadata").json()
    rest: dict[str, Any] = statement["rest"][0]
    assert rest["security"]["service"][0]["coding"][0]["code"] == "SMART-on-FHIR"
    assert any(r["type"] == "Claim" for r in rest["resource"])
