"""SMART Backend Services configuration: the client registration file (checked at start, mistakes
named by file:line), the token key, and how requested scopes meet the registered ones."""
from __future__ import annotations

import json
import os
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from service import server
from service.auth import AuthConfigError
from service.settings import Settings
from service.smart.clients import load_clients
from service.smart.scopes import Scope, grant, parse_all
from service.smart.tokens import AccessTokens

RSA_JWK = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(
    rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()))
P256_JWK = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(ec.generate_private_key(ec.SECP256R1()).public_key()))


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "clients.yaml"
    path.write_text(text)
    return path


def test_a_registration_file_loads(tmp_path: Path) -> None:
    path = write(tmp_path, f"""clients:
  - client_id: app
    jwks: {json.dumps({"keys": [{**RSA_JWK, "kid": "k1"}]})}
    scopes: [system/Questionnaire.rs, system/*.read]
  - client_id: remote
    jwks_uri: https://app.example.org/jwks.json
    scopes: [system/ValueSet.read]
""")
    clients = load_clients(path)
    assert clients["app"].keys["k1"].algorithms == ("RS384",)
    assert [str(s) for s in clients["app"].scopes] == ["system/Questionnaire.rs", "system/*.read"]
    assert clients["remote"].jwks_uri == "https://app.example.org/jwks.json" and not clients["remote"].keys


MISTAKES = {
    "a scope that is not a system scope": (
        "clients:\n  - client_id: app\n    jwks_uri: https://a.example/j\n    scopes:\n"
        "      - system/Questionnaire.rs\n      - patient/Observation.read\n",
        ":6: client 'app': 'patient/Observation.read' is not a system scope"),
    "a plain http jwks_uri": (
        "clients:\n  - client_id: app\n    jwks_uri: http://a.example/j\n    scopes: [system/*.read]\n",
        ":3: jwks_uri must be an https URL"),
    "keys inline and by URL": (
        f"clients:\n  - client_id: app\n    jwks_uri: https://a.example/j\n    jwks: {{keys: []}}\n"
        "    scopes: [system/*.read]\n", ":2: client 'app' needs exactly one of jwks"),
    "a key that signs neither RS384 nor ES384": (
        f"clients:\n  - client_id: app\n    jwks: {json.dumps({'keys': [P256_JWK]})}\n    scopes: [system/*.read]\n",
        ":3: client 'app' jwks: a key without kid: it checks none of RS384, ES384"),
    "a key pinned to an algorithm it cannot check": (
        f"clients:\n  - client_id: app\n    jwks: {json.dumps({'keys': [{**P256_JWK, 'kid': 'k1', 'alg': 'ES384'}]})}\n"
        "    scopes: [system/*.read]\n", ":3: client 'app' jwks key k1: alg 'ES384' does not fit the key"),
    "a JWK that is not a key": (
        "clients:\n  - client_id: app\n    jwks: {keys: [{kty: RSA, kid: k1}]}\n    scopes: [system/*.read]\n",
        ":3: client 'app' jwks key k1: "),
    "a client registered twice": (
        "clients:\n  - client_id: app\n    jwks_uri: https://a.example/j\n    scopes: [system/*.read]\n"
        "  - client_id: app\n    jwks_uri: https://b.example/j\n    scopes: [system/*.read]\n",
        ":5: client_id 'app' is registered twice"),
    "an unknown field": (
        "clients:\n  - client_id: app\n    jwks_uri: https://a.example/j\n    scope: [system/*.read]\n",
        ":2: unknown field(s) scope"),
    "no scopes": ("clients:\n  - client_id: app\n    jwks_uri: https://a.example/j\n", ":2: client 'app' needs a list"),
    "no clients": ("clients: []\n", "expected a mapping with a list of clients"),
    "broken YAML": ("clients:\n  - client_id: [app\n", ":3:"),
}


@pytest.mark.parametrize("case", MISTAKES, ids=list(MISTAKES))
def test_a_mistake_is_named_by_file_and_line(tmp_path: Path, case: str) -> None:
    text, message = MISTAKES[case]
    with pytest.raises(AuthConfigError) as refused:
        load_clients(write(tmp_path, text))
    assert str(refused.value).startswith(str(tmp_path / "clients.yaml"))
    assert message in str(refused.value)


def test_http_on_loopback_only_with_the_setting(tmp_path: Path) -> None:
    path = write(tmp_path, "clients:\n  - client_id: app\n    jwks_uri: http://127.0.0.1:9/j\n"
                           "    scopes: [system/*.read]\n")
    assert load_clients(path, loopback_http=True)["app"].jwks_uri == "http://127.0.0.1:9/j"
    with pytest.raises(AuthConfigError, match="COVREQ_SMART_LOOPBACK_HTTP"):
        load_clients(path)
    other = write(tmp_path, "clients:\n  - client_id: app\n    jwks_uri: http://a.example/j\n"
                            "    scopes: [system/*.read]\n")
    with pytest.raises(AuthConfigError, match="loopback"):
        load_clients(other, loopback_http=True)


def test_the_token_key_setting(tmp_path: Path) -> None:
    short = tmp_path / "short.key"
    short.write_text("too-short\n")
    with pytest.raises(AuthConfigError, match="at least 32 characters"):
        AccessTokens.from_settings(Settings(smart_token_key=short))
    with pytest.raises(AuthConfigError, match="cannot be read"):
        AccessTokens.from_settings(Settings(smart_token_key=tmp_path / "absent.key"))
    with pytest.raises(AuthConfigError, match="COVREQ_SMART_TOKEN_SECONDS"):
        AccessTokens.from_settings(Settings(smart_token_seconds=0))
    AccessTokens.write_random(tmp_path / "random.key")
    assert (tmp_path / "random.key").stat().st_mode & 0o777 == 0o600
    assert AccessTokens.from_settings(Settings(smart_token_key=tmp_path / "random.key")).kid.startswith("smart-")


def test_settings_from_the_environment(tmp_path: Path) -> None:
    settings = Settings.from_env({"COVREQ_SMART_CLIENTS": "c.yaml", "COVREQ_SMART_TOKEN_KEY": "t.key",
                                  "COVREQ_SMART_TOKEN_SECONDS": "120", "COVREQ_SMART_LOOPBACK_HTTP": "1"})
    assert (settings.smart_clients, settings.smart_token_key) == (Path("c.yaml"), Path("t.key"))
    assert (settings.smart_token_seconds, settings.smart_loopback_http) == (120, True)
    assert Settings.from_env({}).smart_clients is None


GRANTS = [
    ("system/Questionnaire.read", ["system/Questionnaire.rs"], ["system/Questionnaire.read"]),
    ("system/Questionnaire.rs", ["system/*.read"], ["system/Questionnaire.rs"]),
    ("system/*.read", ["system/Questionnaire.rs", "system/ValueSet.r"],
     ["system/Questionnaire.read", "system/ValueSet.r"]),
    ("system/Questionnaire.cruds", ["system/Questionnaire.rs"], ["system/Questionnaire.rs"]),
    ("system/*.*", ["system/*.read"], ["system/*.read"]),
    ("system/Patient.read", ["system/Questionnaire.rs"], []),
    ("system/Questionnaire.write", ["system/Questionnaire.rs"], []),
    ("patient/Questionnaire.read user/*.read launch openid", ["system/*.read"], []),
    ("system/Observation.rs?category=laboratory", ["system/*.read"], []),
    ("system/Questionnaire.sr", ["system/*.read"], []),  # v2 letters come in the order cruds
]


@pytest.mark.parametrize(("requested", "allowed", "granted"), GRANTS)
def test_what_is_granted_is_what_both_allow(requested: str, allowed: list[str], granted: list[str]) -> None:
    assert grant(requested, parse_all(allowed)) == granted


def test_v1_and_v2_forms_mean_the_same() -> None:
    assert Scope.parse("system/Questionnaire.read").permissions == Scope.parse("system/Questionnaire.rs").permissions
    assert Scope.parse("system/*.write").permissions == frozenset("cud")
    assert Scope.parse("system/Questionnaire.") is None


def test_the_workers_of_an_unconfigured_replica_share_one_token_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COVREQ_SMART_TOKEN_KEY", raising=False)
    with server._replica_key():
        path = Path(os.environ["COVREQ_SMART_TOKEN_KEY"])
        assert path.stat().st_mode & 0o077 == 0
        worker_1, worker_2 = (AccessTokens.from_settings(Settings(smart_token_key=path)) for _ in range(2))
        assert worker_2.caller(worker_1.issue("app", ["system/*.read"])).name == "app"
    assert "COVREQ_SMART_TOKEN_KEY" not in os.environ and not path.exists()
