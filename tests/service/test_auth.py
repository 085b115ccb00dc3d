"""Authentication: CDS Hooks JWTs (signature, iss, aud, exp, iat, jti) and API keys or JWTs on /v1/*."""
from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any, Callable

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from service.api_keys import hash_key
from service.auth import MAX_LIFETIME, AuthConfigError, Guard
from service.settings import Settings

SERVICE_URL = "https://covreq.example.org"
CDS_PATH = "/cds-services/order-sign-crd"
EHR = "https://ehr.example.org"
CLINIC = "https://clinic.example.org"
V1_REQUEST = {"payer": "acme", "place_of_service": "22", "services": [{"code": "15823"}]}
API_KEY = "k3y-for-the-billing-office-0001"


@pytest.fixture(scope="module")
def keys() -> dict[str, Any]:
    """An RSA key (published as a JWKS), an EC key (published as PEM) and a stranger's RSA key."""
    return {"rsa": rsa.generate_private_key(public_exponent=65537, key_size=2048),
            "ec": ec.generate_private_key(ec.SECP256R1()),
            "stranger": rsa.generate_private_key(public_exponent=65537, key_size=2048)}


@pytest.fixture()
def auth_files(tmp_path: Path, keys: dict[str, Any]) -> dict[str, Path]:
    """The trusted-issuers file with its key files, and an API key file."""
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(keys["rsa"].public_key()))
    (tmp_path / "ehr-jwks.json").write_text(json.dumps({"keys": [{**jwk, "kid": "ehr-1", "alg": "RS384"}]}))
    (tmp_path / "clinic.pem").write_bytes(keys["ec"].public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    issuers = tmp_path / "issuers.yaml"
    issuers.write_text(f"issuers:\n  - iss: {EHR}\n    jwks: ehr-jwks.json\n"
                       f"    jku: [{EHR}/jwks.json]\n"
                       f"  - iss: {CLINIC}\n    public_key: clinic.pem\n")
    api_keys = tmp_path / "api-keys.yaml"
    api_keys.write_text(f"billing-office: {hash_key(API_KEY)}\n")
    return {"issuers": issuers, "api_keys": api_keys}


def token(keys: dict[str, Any], key: str = "rsa", alg: str = "RS384", headers: dict[str, Any] | None = None,
          drop: tuple[str, ...] = (), **claims: Any) -> str:
    """A CDS Hooks JWT signed with ``keys[key]``; ``claims`` override the defaults, ``drop`` removes some."""
    now = int(time.time())
    body = {"iss": EHR if key != "ec" else CLINIC, "sub": "ehr-client", "aud": SERVICE_URL + CDS_PATH,
            "iat": now, "exp": now + 120, "jti": uuid.uuid4().hex, **claims}
    for name in drop:
        body.pop(name)
    kid = {"rsa": "ehr-1", "stranger": "ehr-1"}.get(key)
    header = {"typ": "JWT", **({"kid": kid} if kid else {}), **(headers or {})}
    return jwt.encode(body, keys[key], algorithm=alg, headers=header)


@pytest.fixture()
def secured(make_client, auth_files: dict[str, Path]) -> Callable[..., Any]:
    """A client with JWTs on the CDS Hooks endpoints, and API keys (and optionally JWTs) on /v1/*."""
    def build(**overrides: Any) -> Any:
        return make_client(auth_issuers=auth_files["issuers"], service_url=SERVICE_URL,
                           api_keys=auth_files["api_keys"], **overrides)
    return build


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


def test_the_quick_start_needs_no_credentials(client, ig_order_sign) -> None:
    assert client.post("/v1/requirements", json=V1_REQUEST).status_code == 200
    assert client.post(CDS_PATH, json=ig_order_sign()).status_code == 200


def test_a_signed_jwt_from_a_trusted_issuer_is_accepted(secured, keys, ig_order_sign) -> None:
    client = secured()
    response = client.post(CDS_PATH, json=ig_order_sign(), headers=bearer(token(keys)))
    assert response.status_code == 200, response.text
    ec_token = token(keys, "ec", "ES256")  # PEM key, no kid
    assert client.post(CDS_PATH, json=ig_order_sign(), headers=bearer(ec_token)).status_code == 200


def test_a_call_without_a_token_gets_401_with_a_challenge(secured, ig_order_sign) -> None:
    response = secured().post(CDS_PATH, json=ig_order_sign())
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="covreq"'
    assert response.headers["content-type"].startswith("application/fhir+json")
    (issue,) = response.json()["issue"]
    assert "authentication required" in issue["diagnostics"]


def _from_now(**seconds: int) -> Callable[[], dict[str, int]]:
    """Claims ``seconds`` away from the moment the token is made (not from when this module was
    collected: a long suite run would otherwise bring a too-long-lived token within its limit)."""
    return lambda: {claim: int(time.time()) + offset for claim, offset in seconds.items()}


REFUSED = {
    "expired": (_from_now(iat=-400, exp=-200), "expired"),
    "issued in the future": (_from_now(iat=600, exp=700), "not yet valid"),
    "too long-lived": (_from_now(exp=MAX_LIFETIME + 120), "more than 300 seconds"),
    "another audience": (dict(aud="https://elsewhere.example.org"), f"aud must be '{SERVICE_URL}{CDS_PATH}'"),
    # CDS Hooks 2.0: aud "MUST be the URL of the CDS Service endpoint being invoked", not the base URL
    "the base URL as audience": (dict(aud=SERVICE_URL), f"aud must be '{SERVICE_URL}{CDS_PATH}'"),
    # CDS Hooks 2.0: typ is REQUIRED, fixed value JWT (the Inferno CRD kit checks clients for it)
    "no typ": (dict(headers={"typ": None}), "typ must be JWT"),
    "untrusted issuer": (dict(iss="https://evil.example.org"), "not trusted"),
    "no jti": (dict(drop=("jti",)), "jti"),
    "no exp": (dict(drop=("exp",)), "exp"),
    "no iat": (dict(drop=("iat",)), "iat"),
    "no aud": (dict(drop=("aud",)), "aud"),
    "signed by a stranger": (dict(key="stranger"), "Signature verification failed"),
    "unknown kid": (dict(headers={"kid": "nope"}), "no key with kid 'nope'"),
    "untrusted jku": (dict(headers={"jku": "https://evil.example.org/jwks.json"}), "jku"),
    "not typ JWT": (dict(headers={"typ": "at+jwt"}), "typ"),
}


@pytest.mark.parametrize("case", REFUSED, ids=list(REFUSED))
def test_a_bad_token_is_refused_with_401_and_a_clear_reason(secured, keys, ig_order_sign, case: str) -> None:
    arguments, reason = REFUSED[case]
    claims = arguments() if callable(arguments) else arguments
    response = secured().post(CDS_PATH, json=ig_order_sign(), headers=bearer(token(keys, **claims)))
    assert response.status_code == 401
    assert reason in response.json()["issue"][0]["diagnostics"]
    assert response.headers["www-authenticate"] == 'Bearer realm="covreq", error="invalid_token"'


@pytest.mark.parametrize("forged", [
    jwt.encode({"iss": EHR, "aud": SERVICE_URL, "iat": 1, "exp": 2, "jti": "x"}, "shared-secret-of-32-bytes-or-so!",
               algorithm="HS256"),
    jwt.encode({"iss": EHR, "aud": SERVICE_URL, "iat": 1, "exp": 2, "jti": "x"}, None, algorithm="none"),
    "not-a-jwt", "a.b.c", "Zm9v.YmFy.YmF6",
])
def test_unsigned_symmetric_or_malformed_tokens_are_refused(secured, ig_order_sign, forged: str) -> None:
    response = secured().post(CDS_PATH, json=ig_order_sign(), headers=bearer(forged))
    assert response.status_code == 401
    assert response.json()["issue"][0]["diagnostics"]


def test_a_replayed_jti_is_refused(secured, keys, ig_order_sign) -> None:
    client, signed = secured(), token(keys)
    assert client.post(CDS_PATH, json=ig_order_sign(), headers=bearer(signed)).status_code == 200
    again = client.post(CDS_PATH, json=ig_order_sign(), headers=bearer(signed))
    assert again.status_code == 401 and "replay" in again.json()["issue"][0]["diagnostics"]


def test_discovery_and_health_stay_open(secured) -> None:
    client = secured()
    assert client.get("/cds-services").status_code == 200
    assert client.get("/healthz").status_code == 200 and client.get("/readyz").status_code == 200


def test_v1_takes_an_api_key(secured, tmp_path: Path) -> None:
    client = secured()
    missing = client.post("/v1/requirements", json=V1_REQUEST)
    assert missing.status_code == 401
    assert missing.json()["error"]["message"] == "authentication required: send Authorization: Bearer <JWT> or x-api-key"
    assert missing.headers["www-authenticate"] == 'ApiKey realm="covreq", header="x-api-key"'
    wrong = client.get("/v1/ruleset", headers={"X-API-Key": API_KEY + "x"})
    assert wrong.status_code == 401 and wrong.json()["error"]["message"] == "the API key is not valid"
    assert client.post("/v1/requirements", json=V1_REQUEST, headers={"X-API-Key": API_KEY}).status_code == 200
    (record,) = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert record["caller"] == {"kind": "api-key", "name": "billing-office"}


def test_v1_refuses_a_jwt_unless_configured_to_take_one(secured, keys) -> None:
    signed = token(keys, aud=SERVICE_URL)
    refused = secured().post("/v1/requirements", json=V1_REQUEST, headers=bearer(signed))
    assert refused.status_code == 401 and "API key" in refused.json()["error"]["message"]
    accepted = secured(v1_jwt=True).post("/v1/requirements", json=V1_REQUEST, headers=bearer(token(keys, aud=SERVICE_URL)))
    assert accepted.status_code == 200


def test_the_caller_of_a_cds_call_is_audited(secured, keys, ig_order_sign, tmp_path: Path) -> None:
    secured().post(CDS_PATH, json=ig_order_sign(), headers=bearer(token(keys, tenant="north")))
    (record,) = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert record["caller"] == {"kind": "jwt", "name": EHR, "subject": "ehr-client", "tenant": "north"}


def test_unusable_configuration_stops_the_start(auth_files: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(AuthConfigError, match="service URL"):
        Guard.from_settings(Settings(auth_issuers=auth_files["issuers"]))
    damaged = tmp_path / "damaged.yaml"
    damaged.write_text("someone: sha256:abc\n")
    with pytest.raises(AuthConfigError, match="sha256:<64 lower-case hex digits>"):
        Guard.from_settings(Settings(api_keys=damaged))
    with pytest.raises(AuthConfigError, match="trusted issuers"):
        Guard.from_settings(Settings(v1_jwt=True))
    empty = tmp_path / "none.yaml"
    empty.write_text("issuers: []\n")
    with pytest.raises(AuthConfigError, match="no trusted issuers"):
        Guard.from_settings(Settings(auth_issuers=empty, service_url=SERVICE_URL))


def test_settings_from_the_environment(auth_files: dict[str, Path]) -> None:
    settings = Settings.from_env({"COVREQ_AUTH_ISSUERS": str(auth_files["issuers"]), "COVREQ_SERVICE_URL": SERVICE_URL,
                                  "COVREQ_API_KEYS": str(auth_files["api_keys"]), "COVREQ_V1_JWT": "1",
                                  "COVREQ_AUDIT": "/var/log/covreq/audit.jsonl", "COVREQ_LOG_LEVEL": "warning"})
    assert (settings.auth_issuers, settings.service_url, settings.api_keys, settings.v1_jwt) == (
        auth_files["issuers"], SERVICE_URL, auth_files["api_keys"], True)
    assert str(settings.audit_path) == "/var/log/covreq/audit.jsonl" and settings.log_level == "WARNING"
    defaults = Settings.from_env({})
    assert defaults.auth_issuers is None and defaults.api_keys is None and not defaults.v1_jwt
    assert str(defaults.audit_path) == "covreq-audit.jsonl"
