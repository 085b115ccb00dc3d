"""The attacker's suite, JWTs: before authentication, any token (crafted headers, mismatched
algorithms, odd claim types, huge sizes) gets a 401 with a clean message, never a 500.

Regression tests are named after the reports of issue 11 they close.
"""
from __future__ import annotations

import base64
import json
import time
import uuid
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from hypothesis import HealthCheck, given, settings, strategies as st

from service.auth import (ALGORITHMS, MAX_CLAIM_LENGTH, MAX_TOKEN_LENGTH, AuthConfigError, AuthError, Caller,
                          JwtVerifier, load_issuers)

SERVICE_URL = "https://covreq.example.org"
CDS = "/cds-services/order-sign-crd"
RSA_ISS, EC_ISS, ED_ISS = "https://rsa.example.org", "https://ec.example.org", "https://ed.example.org"
CALL = {"hook": "order-sign", "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea", "context": {"patientId": "p"}}
TOKENS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def keys() -> dict[str, Any]:
    """An RSA key pinned to RS256 in its JWKS, a P-256 EC key and an Ed25519 key as PEM files."""
    return {RSA_ISS: rsa.generate_private_key(public_exponent=65537, key_size=2048),
            EC_ISS: ec.generate_private_key(ec.SECP256R1()), ED_ISS: ed25519.Ed25519PrivateKey.generate()}


def _pem(key: Any) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


@pytest.fixture(scope="module")
def issuers_file(tmp_path_factory: pytest.TempPathFactory, keys: dict[str, Any]) -> Path:
    folder = tmp_path_factory.mktemp("issuers")
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(keys[RSA_ISS].public_key()))
    (folder / "rsa.json").write_text(json.dumps({"keys": [{**jwk, "kid": "rsa-1", "alg": "RS256"}]}))
    (folder / "ec.pem").write_bytes(_pem(keys[EC_ISS]))
    (folder / "ed.pem").write_bytes(_pem(keys[ED_ISS]))
    (folder / "issuers.yaml").write_text(
        f"issuers:\n  - iss: {RSA_ISS}\n    jwks: rsa.json\n    jku: [{RSA_ISS}/jwks.json]\n"
        f"  - iss: {EC_ISS}\n    public_key: ec.pem\n  - iss: {ED_ISS}\n    public_key: ed.pem\n")
    return folder / "issuers.yaml"


@pytest.fixture()
def verifier(issuers_file: Path) -> JwtVerifier:
    return JwtVerifier(load_issuers(issuers_file), SERVICE_URL)


@pytest.fixture()
def secured(make_client, issuers_file: Path) -> Any:
    return make_client(auth_issuers=issuers_file, service_url=SERVICE_URL)


def _b64(data: Any) -> str:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def claims(iss: str = RSA_ISS, **changes: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"iss": iss, "aud": SERVICE_URL + CDS, "iat": now, "exp": now + 60, "jti": uuid.uuid4().hex, **changes}


def signed(header: dict[str, Any], payload: Any, key: Any, alg: str | None = None) -> str:
    """A token with exactly this header and payload, signed with ``key`` (headers pyjwt would refuse to write too)."""
    message = f"{_b64(header)}.{_b64(payload)}".encode()
    return f"{message.decode()}.{_b64(jwt.get_algorithm_by_name(alg or header['alg']).sign(message, key))}"


def forged(header: dict[str, Any], payload: Any, signature_bytes: int = 256) -> str:
    """A token with this header and payload and a signature of zeros."""
    return f"{_b64(header)}.{_b64(payload)}.{_b64(bytes(signature_bytes))}"


def refused(client: Any, token: str) -> str:
    response = client.post(CDS, json=CALL, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == 'Bearer realm="covreq", error="invalid_token"'
    message: str = response.json()["issue"][0]["diagnostics"]
    assert len(message) < 400 and "object at 0x" not in message and "generator" not in message
    return message


def test_keys_of_every_type_are_accepted_with_their_own_algorithm(secured, keys: dict[str, Any]) -> None:
    for iss, alg, kid in ((RSA_ISS, "RS256", "rsa-1"), (EC_ISS, "ES256", None), (ED_ISS, "EdDSA", None)):
        token = signed({"alg": alg, "typ": "JWT", **({"kid": kid} if kid else {})}, claims(iss), keys[iss])
        response = secured.post(CDS, json=CALL, headers={"Authorization": f"Bearer {token}"})
        assert response.status_code != 401, (alg, response.text)


@pytest.mark.parametrize("jku", [[f"{RSA_ISS}/jwks.json"], {"url": f"{RSA_ISS}/jwks.json"}, 7, None])
def test_regression_jku_as_a_list_or_object_is_a_500(secured, keys: dict[str, Any], jku: Any) -> None:
    token = signed({"alg": "RS256", "typ": "JWT", "kid": "rsa-1", "jku": jku}, claims(), keys[RSA_ISS])
    assert "is not a key set trusted for" in refused(secured, token)


@pytest.mark.parametrize("iss, alg, signature_bytes", [(EC_ISS, "RS256", 256), (EC_ISS, "PS512", 256),
                                                       (RSA_ISS, "ES256", 64), (ED_ISS, "ES256", 64),
                                                       (EC_ISS, "EdDSA", 64), (EC_ISS, "ES384", 96)])
def test_regression_alg_that_does_not_fit_the_key_type_is_a_500(secured, iss: str, alg: str,
                                                                signature_bytes: int) -> None:
    header = {"alg": alg, "typ": "JWT", **({"kid": "rsa-1"} if iss == RSA_ISS else {})}
    message = refused(secured, forged(header, claims(iss), signature_bytes))
    assert message.startswith(f"JWT alg {alg} is not accepted for this key of '{iss}'; it takes ")


@pytest.mark.parametrize("alg", ["RS512", "PS256", "RS384"])
def test_a_jwks_key_pinned_to_rs256_takes_no_other_algorithm(secured, keys: dict[str, Any], alg: str) -> None:
    token = signed({"alg": alg, "typ": "JWT", "kid": "rsa-1"}, claims(), keys[RSA_ISS])
    assert refused(secured, token) == f"JWT alg {alg} is not accepted for this key of '{RSA_ISS}'; it takes RS256"


@pytest.mark.parametrize("claim, value", [("exp", "9999999999"), ("iat", "1700000000"), ("exp", [1]),
                                          ("iat", {"at": 1}), ("exp", True)])
def test_regression_validly_signed_exp_or_iat_as_strings_is_a_500(secured, keys: dict[str, Any], claim: str,
                                                                   value: Any) -> None:
    token = signed({"alg": "RS256", "typ": "JWT", "kid": "rsa-1"}, claims(**{claim: value}), keys[RSA_ISS])
    message = refused(secured, token)
    assert claim in message or "expired" in message


def test_exp_and_iat_may_be_fractional_seconds(verifier: JwtVerifier, keys: dict[str, Any]) -> None:
    now = time.time()
    token = signed({"alg": "RS256", "typ": "JWT", "kid": "rsa-1"}, claims(iat=now, exp=now + 60.5), keys[RSA_ISS])
    assert verifier.verify(token, CDS).name == RSA_ISS


@pytest.mark.parametrize("number", ["Infinity", "NaN", "1e400", "-Infinity"])
def test_non_finite_times_are_refused(verifier: JwtVerifier, keys: dict[str, Any], number: str) -> None:
    payload = json.dumps(claims(exp=0)).replace('"exp": 0', f'"exp": {number}').encode()
    header = _b64({"alg": "RS256", "typ": "JWT", "kid": "rsa-1"})
    message = f"{header}.{_b64(payload)}"
    token = f"{message}.{_b64(jwt.get_algorithm_by_name('RS256').sign(message.encode(), keys[RSA_ISS]))}"
    with pytest.raises(AuthError):
        verifier.verify(token, CDS)


def test_a_token_past_the_size_limit_is_refused_before_it_is_read(secured) -> None:
    message = refused(secured, "e" * (MAX_TOKEN_LENGTH + 1))
    assert message == f"the bearer token is {MAX_TOKEN_LENGTH + 1} characters long; the limit is {MAX_TOKEN_LENGTH}"


@pytest.mark.parametrize("claim", ["sub", "tenant"])
@pytest.mark.parametrize("value", ["t" * (MAX_CLAIM_LENGTH + 1), {"name": "north"}, ["north"], 7])
def test_regression_tenant_claim_copied_into_the_audit_file_at_any_size(secured, keys: dict[str, Any], tmp_path: Path,
                                                                        claim: str, value: Any) -> None:
    token = signed({"alg": "RS256", "typ": "JWT", "kid": "rsa-1"}, claims(**{claim: value}), keys[RSA_ISS])
    message = refused(secured, token)
    if claim == "tenant" or isinstance(value, str):  # pyjwt itself refuses a sub that is not a string
        assert message == f"JWT {claim} must be a string of at most {MAX_CLAIM_LENGTH} characters"
    audit = tmp_path / "audit.jsonl"
    assert not audit.exists() or "t" * 64 not in audit.read_text()


def test_a_huge_untrusted_issuer_is_not_echoed(secured, keys: dict[str, Any]) -> None:
    token = signed({"alg": "RS256", "typ": "JWT"}, claims(iss="https://" + "x" * 5000), keys[RSA_ISS])
    assert "x" * 100 not in refused(secured, token)


def test_a_key_pinned_to_an_algorithm_it_cannot_check_stops_the_start(tmp_path: Path, keys: dict[str, Any]) -> None:
    (tmp_path / "ec.pem").write_bytes(_pem(keys[EC_ISS]))
    (tmp_path / "issuers.yaml").write_text(f"issuers:\n  - iss: {EC_ISS}\n    public_key: ec.pem\n    alg: RS256\n")
    with pytest.raises(AuthConfigError, match="alg 'RS256' does not fit the key"):
        load_issuers(tmp_path / "issuers.yaml")


json_junk = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
                         lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
                         max_leaves=8)
header_values = st.fixed_dictionaries({}, optional={
    "alg": st.sampled_from([*ALGORITHMS, "none", "HS256"]) | json_junk, "kid": st.just("rsa-1") | json_junk,
    "typ": st.just("JWT") | json_junk, "jku": st.just(f"{RSA_ISS}/jwks.json") | json_junk, "crit": json_junk})
claim_values = st.fixed_dictionaries({}, optional={
    name: json_junk for name in ("iss", "aud", "exp", "iat", "nbf", "jti", "sub", "tenant")})


@TOKENS
@given(header=header_values, changes=claim_values, sign_as=st.sampled_from(["RS256", "forged"]))
def test_any_header_and_claims_end_in_a_caller_or_a_401(verifier: JwtVerifier, keys: dict[str, Any],
                                                         header: dict[str, Any], changes: dict[str, Any],
                                                         sign_as: str) -> None:
    payload = {**claims(), **changes}
    token = (signed(header, payload, keys[RSA_ISS], "RS256") if sign_as == "RS256" else forged(header, payload))
    try:
        assert isinstance(verifier.verify(token, CDS), Caller)
    except AuthError as err:
        assert err.message and len(err.message) < 400


@TOKENS
@given(token=st.text(max_size=300) | st.from_regex(r"\A[A-Za-z0-9_-]{0,40}\.[A-Za-z0-9_-]{0,40}\.[A-Za-z0-9_-]{0,40}\Z"))
def test_any_bearer_text_is_refused_with_a_401(verifier: JwtVerifier, token: str) -> None:
    with pytest.raises(AuthError):
        verifier.verify(token, CDS)
