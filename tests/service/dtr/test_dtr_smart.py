"""SMART Backend Services end to end: a client with its own key pair asks the token endpoint for an
access token (client_credentials, private_key_jwt) and calls /fhir with it; scopes are enforced,
bad assertions get OAuth errors, and the CDS Hooks JWTs keep working where they did."""
from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator
from unittest.mock import patch

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
import loopback
from dtr_helpers import BUNDLED_RULES, FIXTURES, bundles, package_request, response_of, service_request
from fastapi.testclient import TestClient
from serving import served

from service.auth import AuthConfigError
from service.smart import jwks

FHIR_BASE = "https://payer.example/fhir"
TOKEN_URL = FHIR_BASE + "/auth/token"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
PACKAGE = "/fhir/Questionnaire/$questionnaire-package"
SERVICE_URL = "https://covreq.example.org"
EHR = "https://ehr.example.org"


@pytest.fixture(scope="module")
def keys() -> dict[str, Any]:
    """The clients' private keys: RSA (RS384), EC P-384 (ES384, published at a jwks_uri), a stranger's."""
    mine, strangers = (rsa.generate_private_key(public_exponent=65537, key_size=2048) for _ in range(2))
    return {"rsa": mine, "stranger": strangers, "ec": ec.generate_private_key(ec.SECP384R1())}


def public_jwk(private: Any, kid: str) -> dict[str, Any]:
    """The public JWK of a private key, with its kid."""
    algorithm = jwt.algorithms.RSAAlgorithm if isinstance(private, rsa.RSAPrivateKey) else jwt.algorithms.ECAlgorithm
    return {**json.loads(algorithm.to_jwk(private.public_key())), "kid": kid}


class JwksServer:
    """A client's JWKS on a real loopback HTTP server; ``jwks`` may be replaced (key rotation)."""

    def __init__(self, jwks: dict[str, Any]) -> None:
        self.jwks, self.hits = jwks, 0
        owner = self

        class Handler(loopback.QuietHandler):
            def do_GET(self) -> None:  # noqa: N802 - the http.server hook's name
                owner.hits += 1
                self.send(200, json.dumps(owner.jwks).encode())

        self.server = loopback.start(Handler)
        self.url = f"{loopback.origin(self.server)}/jwks.json"


@pytest.fixture()
def jwks_server(keys: dict[str, Any]) -> Iterator[JwksServer]:
    server = JwksServer({"keys": [public_jwk(keys["ec"], "ec-1")]})
    yield server
    loopback.stop(server.server)


@pytest.fixture()
def registration(tmp_path: Path, keys: dict[str, Any], jwks_server: JwksServer) -> Path:
    """The client registration file: one client with an inline JWKS, one by jwks_uri, a narrow one."""
    inline = json.dumps({"keys": [{**public_jwk(keys["rsa"], "rsa-1"), "alg": "RS384"}]})
    path = tmp_path / "smart-clients.yaml"
    path.write_text(f"""clients:
  - client_id: dtr-app
    jwks: {inline}
    scopes: [system/Questionnaire.rs, system/ValueSet.rs, system/Library.rs]
  - client_id: ehr-backend
    jwks_uri: {jwks_server.url}
    scopes: [system/*.read]
  - client_id: searcher
    jwks: {inline}
    scopes: [system/Questionnaire.s]
""")
    return path


@pytest.fixture()
def token_key(tmp_path: Path) -> Path:
    path = tmp_path / "token.key"
    path.write_text("covreq-test-access-token-secret-0123456789\n")
    return path


@pytest.fixture()
def smart(make_dtr_client: Callable[..., TestClient], registration: Path, token_key: Path) -> Callable[..., TestClient]:
    """A service with SMART Backend Services on (and optionally other settings)."""
    def build(**overrides: Any) -> TestClient:
        return make_dtr_client(fhir_base=FHIR_BASE, smart_clients=registration, smart_token_key=token_key,
                               smart_loopback_http=True, **overrides)
    return build


def assertion(keys: dict[str, Any], client_id: str = "dtr-app", key: str = "rsa", alg: str = "RS384",
              headers: dict[str, Any] | None = None, drop: tuple[str, ...] = (), **claims: Any) -> str:
    """A client assertion signed with ``keys[key]``; ``claims`` override the defaults, ``drop`` removes some."""
    now = int(time.time())
    body = {"iss": client_id, "sub": client_id, "aud": TOKEN_URL, "exp": now + 240, "jti": uuid.uuid4().hex,
            **claims}
    for name in drop:
        body.pop(name)
    kid = {"rsa": "rsa-1", "stranger": "rsa-1", "ec": "ec-1"}[key]
    return jwt.encode(body, keys[key], algorithm=alg, headers={"typ": "JWT", "kid": kid, **(headers or {})})


def token_request(client: TestClient, signed: str, scope: str = "system/Questionnaire.rs", **form: str) -> Any:
    return client.post("/fhir/auth/token", data={
        "grant_type": "client_credentials", "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": signed, "scope": scope, **form})


def access_token(client: TestClient, keys: dict[str, Any], scope: str = "system/Questionnaire.rs", **kw: Any) -> str:
    reply = token_request(client, assertion(keys, **kw), scope)
    assert reply.status_code == 200, reply.text
    return str(reply.json()["access_token"])


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


def test_discovery_is_public_and_names_the_token_endpoint(smart) -> None:
    client = smart()
    reply = client.get("/fhir/.well-known/smart-configuration")
    assert reply.status_code == 200, reply.text
    found = reply.json()
    assert found["token_endpoint"] == TOKEN_URL
    assert found["token_endpoint_auth_methods_supported"] == ["private_key_jwt"]
    assert set(found["token_endpoint_auth_signing_alg_values_supported"]) == {"RS384", "ES384"}
    assert found["grant_types_supported"] == ["client_credentials"]
    assert "system/Questionnaire.rs" in found["scopes_supported"]
    assert "client-confidential-asymmetric" in found["capabilities"]
    assert client.get("/fhir/Questionnaire").status_code == 401  # the FHIR endpoints are closed


def test_the_capability_statement_describes_smart(smart) -> None:
    security = smart().get("/fhir/metadata").json()["rest"][0]["security"]
    (oauth,) = security["extension"]
    assert oauth["url"] == "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
    assert oauth["extension"] == [{"url": "token", "valueUri": TOKEN_URL}]
    assert security["service"][0]["coding"][0]["code"] == "SMART-on-FHIR"


def test_without_smart_there_is_no_discovery_and_no_smart_security(make_dtr_client) -> None:
    client = make_dtr_client()
    assert client.get("/fhir/.well-known/smart-configuration").status_code == 404
    assert client.post("/fhir/auth/token", data={"grant_type": "client_credentials"}).status_code == 404
    security = client.get("/fhir/metadata").json()["rest"][0]["security"]  # says covreq authenticates no one
    assert "oauth-uris" not in json.dumps(security) and "SMART-on-FHIR" not in json.dumps(security)


def test_a_client_with_its_own_key_gets_a_token_and_reads_forms(smart, keys) -> None:
    client = smart()
    reply = token_request(client, assertion(keys), "system/Questionnaire.rs system/Patient.read")
    assert reply.status_code == 200, reply.text
    assert reply.headers["cache-control"] == "no-store"
    answer = reply.json()
    assert answer["token_type"] == "bearer" and answer["expires_in"] == 300
    assert answer["scope"] == "system/Questionnaire.rs"  # Patient is not among the client's scopes
    found = client.get("/fhir/Questionnaire", headers=bearer(answer["access_token"]))
    assert found.status_code == 200, found.text
    first = found.json()["entry"][0]["resource"]["id"]
    assert client.get(f"/fhir/Questionnaire/{first}", headers=bearer(answer["access_token"])).status_code == 200


def test_the_dtr_operations_with_an_access_token(smart, keys, tmp_path: Path) -> None:
    client = smart()
    token = access_token(client, keys, "system/Questionnaire.read")
    reply = client.post(PACKAGE, json=package_request(service_request()), headers=bearer(token))
    assert reply.status_code == 200, reply.text
    (bundle,) = bundles(reply.json())
    following = client.post("/fhir/Questionnaire/$next-question", json=response_of(bundle), headers=bearer(token))
    assert following.status_code == 200, following.text
    record = json.loads((tmp_path / "audit.jsonl").read_text().splitlines()[-1])
    assert record["caller"] == {"kind": "smart", "name": "dtr-app", "subject": "dtr-app",
                                "scopes": ["system/Questionnaire.read"]}


def test_a_client_registered_by_jwks_uri_signs_with_es384(smart, keys, jwks_server: JwksServer) -> None:
    client = smart()
    token = access_token(client, keys, "system/*.read", client_id="ehr-backend", key="ec", alg="ES384")
    assert client.get("/fhir/Questionnaire", headers=bearer(token)).status_code == 200
    access_token(client, keys, "system/*.read", client_id="ehr-backend", key="ec", alg="ES384")
    assert jwks_server.hits == 1  # the key set is kept


@pytest.mark.parametrize("refresh", [30, 0])
def test_a_rotated_key_is_fetched_again_but_not_too_often(smart, keys, jwks_server: JwksServer, monkeypatch,
                                                           refresh: int) -> None:
    monkeypatch.setattr(jwks, "REFRESH_SECONDS", refresh)
    client = smart()
    access_token(client, keys, "system/*.read", client_id="ehr-backend", key="ec", alg="ES384")
    rotated = ec.generate_private_key(ec.SECP384R1())
    jwks_server.jwks = {"keys": [public_jwk(rotated, "ec-2")]}
    signed = assertion({"ec": rotated}, "ehr-backend", "ec", "ES384", headers={"kid": "ec-2"})
    reply = token_request(client, signed, "system/*.read")
    if refresh:  # fetched a moment ago: an unknown kid does not make covreq fetch the set again
        assert (reply.status_code, jwks_server.hits) == (401, 1)
    else:
        assert (reply.status_code, jwks_server.hits) == (200, 2)


def test_scopes_are_enforced_per_operation(smart, keys) -> None:
    client = smart()
    token = access_token(client, keys, "system/Questionnaire.s", client_id="searcher")
    assert client.get("/fhir/Questionnaire", headers=bearer(token)).status_code == 200
    first = client.get("/fhir/Questionnaire", headers=bearer(token)).json()["entry"][0]["resource"]["id"]
    for refused in (client.get(f"/fhir/Questionnaire/{first}", headers=bearer(token)),
                    client.post(PACKAGE, json=package_request(service_request()), headers=bearer(token))):
        assert refused.status_code == 403, refused.text
        assert refused.headers["www-authenticate"] == \
            'Bearer realm="covreq", error="insufficient_scope", scope="system/Questionnaire.r"'
        (issue,) = refused.json()["issue"]
        assert issue["code"] == "forbidden" and "needs 'r' on Questionnaire" in issue["diagnostics"]
    other = access_token(client, keys, "system/ValueSet.rs")
    assert client.post(PACKAGE, json={}, headers=bearer(other)).status_code == 403
    assert client.post("/fhir/$unknown-operation", json={}, headers=bearer(token)).status_code == 403


def test_scopes_no_client_may_have_are_refused(smart, keys) -> None:
    reply = token_request(smart(), assertion(keys), "system/Patient.read patient/Questionnaire.read")
    assert reply.status_code == 400
    assert reply.json()["error"] == "invalid_scope"


BAD_ASSERTIONS = {
    "expired": (lambda: dict(exp=int(time.time()) - 120), "expired"),  # times taken when the assertion is made
    "more than five minutes ahead": (lambda: dict(exp=int(time.time()) + 900), "at most 300 seconds ahead"),
    "another audience": (dict(aud=FHIR_BASE), "aud must be the token endpoint"),
    "the service URL as audience": (dict(aud=SERVICE_URL), "aud must be the token endpoint"),
    "sub differs from iss": (dict(sub="someone-else"), "sub must be the client_id"),
    "unregistered client": (dict(client_id="stranger-app"), "not a registered client_id"),
    "signed by a stranger": (dict(key="stranger"), "Signature verification failed"),
    "unknown kid": (dict(headers={"kid": "nope"}), "no RS384 key with kid 'nope'"),
    "RS256": (dict(alg="RS256"), "alg 'RS256' is not accepted"),
    "a foreign jku": (dict(headers={"jku": "https://evil.example/jwks.json"}), "jku"),
    "typ not JWT": (dict(headers={"typ": "at+jwt"}), "typ must be JWT"),
    "no jti": (dict(drop=("jti",)), "jti"),
    "no exp": (dict(drop=("exp",)), "exp"),
}


@pytest.mark.parametrize("case", BAD_ASSERTIONS, ids=list(BAD_ASSERTIONS))
def test_a_bad_assertion_is_invalid_client(smart, keys, case: str) -> None:
    arguments, reason = BAD_ASSERTIONS[case]
    claims = arguments() if callable(arguments) else arguments
    reply = token_request(smart(), assertion(keys, **claims))
    assert reply.status_code == 401, reply.text
    assert reply.json()["error"] == "invalid_client"
    assert reason in reply.json()["error_description"]


def forged(header: dict[str, Any], claims: dict[str, Any]) -> str:
    """A JWS with any header and claims, signed with nothing that matters."""
    segments = [jwt.utils.base64url_encode(json.dumps(part).encode()) for part in (header, claims)]
    return b".".join([*segments, b"c2ln"]).decode()


HOSTILE = {
    "a kid that is a mapping": forged({"alg": "RS384", "typ": "JWT", "kid": {"a": 1}}, {"iss": "dtr-app"}),
    "a list of algorithms": forged({"alg": ["RS384"], "typ": "JWT"}, {"iss": "dtr-app"}),
    "alg none": forged({"alg": "none", "typ": "JWT"}, {"iss": "dtr-app", "sub": "dtr-app"}),
    "claims that are a list": forged({"alg": "RS384", "typ": "JWT"}, ["dtr-app"]),  # type: ignore[dict-item]
    "an iss that is a number": forged({"alg": "RS384", "typ": "JWT"}, {"iss": 7}),
    "a jku that is a list": forged({"alg": "RS384", "typ": "JWT", "jku": ["x"]}, {"iss": "ehr-backend"}),
    "a huge assertion": "a" * 20_000,
    "not base64": "@@@.@@@.@@@",
}


@pytest.mark.parametrize("case", HOSTILE, ids=list(HOSTILE))
def test_a_hostile_assertion_is_a_clear_401(smart, case: str) -> None:
    reply = token_request(smart(), HOSTILE[case])
    assert (reply.status_code, reply.json()["error"]) == (401, "invalid_client")


def test_a_hostile_body_is_a_clear_400(smart) -> None:
    reply = smart().post("/fhir/auth/token", content=b"grant_type=\xff\xfe%ZZ&&==",
                         headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert (reply.status_code, reply.json()["error"]) == (400, "invalid_request")


def test_a_replayed_assertion_is_refused(smart, keys) -> None:
    client = smart()
    signed = assertion(keys)
    assert token_request(client, signed).status_code == 200
    again = token_request(client, signed)
    assert again.status_code == 401
    assert "already used (replay)" in again.json()["error_description"]


def test_malformed_token_requests_get_oauth_errors(smart, keys) -> None:
    client = smart()
    assert token_request(client, assertion(keys), grant_type="authorization_code").json()["error"] == \
        "unsupported_grant_type"
    as_json = client.post("/fhir/auth/token", json={"grant_type": "client_credentials"})
    assert (as_json.status_code, as_json.json()["error"]) == (400, "invalid_request")
    no_scope = token_request(client, assertion(keys), scope="")
    assert (no_scope.status_code, no_scope.json()["error"]) == (400, "invalid_request")
    no_assertion = client.post("/fhir/auth/token", data={"grant_type": "client_credentials", "scope": "system/*.read"})
    assert (no_assertion.status_code, no_assertion.json()["error"]) == (401, "invalid_client")
    twice = client.post("/fhir/auth/token", content="grant_type=client_credentials&grant_type=client_credentials",
                        headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert (twice.status_code, twice.json()["error"]) == (400, "invalid_request")
    garbage = token_request(client, "not.a.jwt")
    assert (garbage.status_code, garbage.json()["error"]) == (401, "invalid_client")


def test_an_expired_or_foreign_access_token_is_refused(smart, keys, token_key: Path) -> None:
    client = smart()
    secret = token_key.read_text().strip()
    kid = jwt.get_unverified_header(access_token(client, keys))["kid"]
    now = int(time.time())
    claims = {"iss": "covreq", "aud": "covreq/fhir", "sub": "dtr-app", "scope": "system/Questionnaire.rs",
              "iat": now - 900, "exp": now - 600}
    expired = jwt.encode(claims, secret, algorithm="HS256", headers={"typ": "at+jwt", "kid": kid})
    reply = client.get("/fhir/Questionnaire", headers=bearer(expired))
    assert reply.status_code == 401 and "expired" in reply.json()["issue"][0]["diagnostics"]
    assert 'error="invalid_token"' in reply.headers["www-authenticate"]
    forged = jwt.encode({**claims, "exp": now + 60}, "another-secret-of-at-least-32-characters", algorithm="HS256",
                        headers={"typ": "at+jwt", "kid": kid})
    assert client.get("/fhir/Questionnaire", headers=bearer(forged)).status_code == 401
    assert client.get("/fhir/Questionnaire", headers=bearer("opaque-token")).status_code == 401


def test_cds_hooks_jwts_keep_working_beside_smart(smart, keys, tmp_path: Path) -> None:
    (tmp_path / "ehr-jwks.json").write_text(json.dumps({"keys": [public_jwk(keys["rsa"], "ehr-1")]}))
    (tmp_path / "issuers.yaml").write_text(f"issuers:\n  - iss: {EHR}\n    jwks: ehr-jwks.json\n")
    client = smart(auth_issuers=tmp_path / "issuers.yaml", service_url=SERVICE_URL)
    now = int(time.time())
    hooks_jwt = jwt.encode({"iss": EHR, "aud": SERVICE_URL, "iat": now, "exp": now + 60, "jti": uuid.uuid4().hex},
                           keys["rsa"], algorithm="RS384", headers={"typ": "JWT", "kid": "ehr-1"})
    assert client.get("/fhir/Questionnaire", headers=bearer(hooks_jwt)).status_code == 200
    token = access_token(client, keys)
    assert client.get("/fhir/Questionnaire", headers=bearer(token)).status_code == 200
    refused = client.post("/cds-services/order-sign-crd", json={}, headers=bearer(token))
    assert refused.status_code == 401  # an access token is no CDS Hooks JWT
    assert client.get("/fhir/.well-known/smart-configuration").status_code == 200


def test_an_http_jwks_uri_needs_the_loopback_setting(make_dtr_client, registration: Path, token_key: Path) -> None:
    with pytest.raises(AuthConfigError, match=r"smart-clients.yaml:6: jwks_uri must be https"):
        make_dtr_client(smart_clients=registration, smart_token_key=token_key)


def test_over_http_with_several_workers_one_token_serves_them_all(registration: Path, keys, tmp_path: Path) -> None:
    """A real ``covreq serve --workers 2`` without COVREQ_SMART_TOKEN_KEY: discovery, the token request
    and the FHIR calls go over loopback HTTP, on new connections spread over both workers, which share
    the replica's random token key."""
    env = {"COVREQ_SMART_CLIENTS": str(registration), "COVREQ_SMART_LOOPBACK_HTTP": "1",
           "COVREQ_PAYERS": str(FIXTURES / "payers.yaml")}
    env_without_key = {k: v for k, v in os.environ.items() if k not in ("COVREQ_SMART_TOKEN_KEY", "COVREQ_DTR_KEYS")}
    with patch.dict(os.environ, env_without_key, clear=True), \
            served(tmp_path, "--rules", str(BUNDLED_RULES), "--workers", "2", env=env) as service:
        close = {"Connection": "close"}
        discovery = httpx.get(f"{service.base}/fhir/.well-known/smart-configuration", headers=close).json()
        assert discovery["token_endpoint"] == f"{service.base}/fhir/auth/token"
        now = int(time.time())
        signed = jwt.encode({"iss": "dtr-app", "sub": "dtr-app", "aud": discovery["token_endpoint"],
                             "exp": now + 240, "jti": uuid.uuid4().hex}, keys["rsa"], algorithm="RS384",
                            headers={"typ": "JWT", "kid": "rsa-1"})
        answer = httpx.post(discovery["token_endpoint"], headers=close, data={
            "grant_type": "client_credentials", "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": signed, "scope": "system/Questionnaire.rs"})
        assert answer.status_code == 200, answer.text
        token = answer.json()["access_token"]
        for _ in range(8):
            found = httpx.get(f"{service.base}/fhir/Questionnaire", headers={**close, **bearer(token)})
            assert found.status_code == 200, found.text
        assert httpx.get(f"{service.base}/fhir/Questionnaire", headers=close).status_code == 401
        # only the check before the workers start makes a key of its own: the workers read the shared one
        assert [e.get("event") for e in service.events()].count("smart-token-key-ephemeral") == 1
