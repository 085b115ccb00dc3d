"""An issuer's ``jwks_uri``, fetched from a real JWKS server on loopback that rotates its keys: a
token with the new ``kid`` verifies after the rotation; a flood of invented ``kid`` values makes at
most one fetch per interval; with the server down, tokens whose keys are held still verify and the
others get 401, never 500; fetches are bounded in time, bytes and keys, and only https (or http to
loopback) is fetched."""
from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

import loopback
from service.auth import AuthConfigError, load_issuers
from service.jwks import MAX_JWKS_BYTES, MAX_JWKS_KEYS, JwksPolicy

SERVICE_URL = "https://covreq.example.org"
EHR = "https://ehr.example.org"
RULESET = "/v1/ruleset"


@dataclass
class JwksServer:
    """A JWKS endpoint on 127.0.0.1: serves ``body`` with ``status`` after ``delay`` seconds and counts GETs."""

    body: bytes = b'{"keys": []}'
    status: int = 200
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    gets: int = 0
    url: str = ""

    def publish(self, **keys: Any) -> None:
        """Serve these private keys' public halves, by kid."""
        self.body = json.dumps({"keys": [jwk(key, kid) for kid, key in keys.items()]}).encode()


def jwk(key: Any, kid: str) -> dict[str, Any]:
    public = key.public_key()
    algorithm = jwt.algorithms.RSAAlgorithm if isinstance(public, rsa.RSAPublicKey) else jwt.algorithms.ECAlgorithm
    return {**json.loads(algorithm.to_jwk(public)), "kid": kid, "use": "sig"}


@pytest.fixture()
def jwks() -> Iterator[JwksServer]:
    state = JwksServer()

    class Handler(loopback.QuietHandler):
        def do_GET(self) -> None:  # noqa: N802 - the http.server hook's name
            state.gets += 1
            time.sleep(state.delay)
            try:
                self.send(state.status, state.body, state.headers)
            except (BrokenPipeError, ConnectionResetError):
                pass

    server = loopback.start(Handler)
    state.url = f"{loopback.origin(server)}/.well-known/jwks.json"
    yield state
    loopback.stop(server)


@pytest.fixture(scope="module")
def keys() -> dict[str, Any]:
    return {"old": rsa.generate_private_key(public_exponent=65537, key_size=2048),
            "new": ec.generate_private_key(ec.SECP256R1()),
            "stranger": ec.generate_private_key(ec.SECP256R1())}


def token(key: Any, kid: str, **headers: Any) -> dict[str, str]:
    now = int(time.time())
    claims = {"iss": EHR, "aud": SERVICE_URL, "iat": now, "exp": now + 60, "jti": uuid.uuid4().hex}
    alg = "RS256" if isinstance(key, rsa.RSAPrivateKey) else "ES256"
    return {"Authorization": "Bearer " + jwt.encode(claims, key, algorithm=alg, headers={"kid": kid, **headers})}


@pytest.fixture()
def issuers(tmp_path: Path, jwks: JwksServer) -> Path:
    path = tmp_path / "issuers.yaml"
    path.write_text(f"issuers:\n  - iss: {EHR}\n    jwks_uri: {jwks.url}\n")
    return path


@pytest.fixture()
def service(make_client, issuers: Path) -> Callable[..., Any]:
    """A client whose /v1/* takes the issuer's JWTs; overrides are settings (refresh interval ...)."""
    def build(**settings: Any) -> Any:
        return make_client(auth_issuers=issuers, service_url=SERVICE_URL, v1_jwt=True, **settings)
    return build


def diagnosis(response: Any) -> str:
    assert response.status_code == 401, response.text
    message: str = response.json()["error"]["message"]
    return message


def test_a_token_with_the_new_kid_verifies_after_the_ehr_rotates(service, jwks: JwksServer, keys) -> None:
    jwks.publish(**{"ehr-2025": keys["old"]})
    client = service(jwks_refresh_seconds=0.5)
    assert client.get(RULESET, headers=token(keys["old"], "ehr-2025")).status_code == 200
    assert client.get(RULESET, headers=token(keys["old"], "ehr-2025")).status_code == 200
    assert jwks.gets == 1  # fetched on the first token, then held
    jwks.publish(**{"ehr-2026": keys["new"]})  # rotation: the old key is withdrawn
    time.sleep(0.6)
    assert client.get(RULESET, headers=token(keys["new"], "ehr-2026")).status_code == 200
    assert jwks.gets == 2
    assert "Signature verification failed" in diagnosis(
        client.get(RULESET, headers=token(keys["stranger"], "ehr-2026")))
    time.sleep(0.6)
    assert "no key with kid 'ehr-2025'" in diagnosis(client.get(RULESET, headers=token(keys["old"], "ehr-2025")))
    assert jwks.gets == 3  # the withdrawn kid was looked for once, and is refused


def test_a_flood_of_unknown_kids_makes_at_most_one_fetch_per_interval(service, jwks: JwksServer, keys) -> None:
    jwks.publish(**{"ehr-1": keys["old"]})
    interval = 1.5
    client = service(jwks_refresh_seconds=interval)
    assert client.get(RULESET, headers=token(keys["old"], "ehr-1")).status_code == 200
    for flood in range(2):
        time.sleep(interval + 0.05)
        before, started = jwks.gets, time.monotonic()
        for n in range(100):
            response = client.get(RULESET, headers=token(keys["stranger"], f"random-{flood}-{n}"))
            assert "no key with kid" in diagnosis(response)
        intervals = int((time.monotonic() - started) // interval) + 1  # 1 unless the machine is very busy
        assert 1 <= jwks.gets - before <= intervals
    assert client.get(RULESET, headers=token(keys["old"], "ehr-1")).status_code == 200


def test_requests_waiting_for_the_new_key_share_one_fetch(service, jwks: JwksServer, keys) -> None:
    jwks.publish(**{"ehr-1": keys["old"], "ehr-2": keys["new"]})
    jwks.delay = 0.3
    app = service().app

    async def many() -> list[int]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://covreq") as http:
            calls = [http.get(RULESET, headers=token(keys["new"], "ehr-2")) for _ in range(20)]
            return [r.status_code for r in await asyncio.gather(*calls)]
    assert asyncio.run(many()) == [200] * 20
    assert jwks.gets == 1


def test_with_the_jwks_server_down_held_keys_verify_and_others_get_401(service, jwks: JwksServer, keys) -> None:
    jwks.publish(**{"ehr-1": keys["old"]})
    client = service(jwks_refresh_seconds=0.2, jwks_max_age_seconds=0.2)
    assert client.get(RULESET, headers=token(keys["old"], "ehr-1")).status_code == 200
    jwks.status, jwks.body = 503, b"down for maintenance"
    time.sleep(0.3)  # the keys are now old: the next token tries a fetch, which fails
    assert client.get(RULESET, headers=token(keys["old"], "ehr-1")).status_code == 200
    assert jwks.gets == 2
    assert "no key with kid 'ehr-9'" in diagnosis(client.get(RULESET, headers=token(keys["new"], "ehr-9")))


def test_a_jwks_server_never_reached_gives_401(service, jwks: JwksServer, keys, caplog) -> None:
    jwks.status = 500
    client = service()
    with caplog.at_level("WARNING", logger="covreq.auth"):
        message = diagnosis(client.get(RULESET, headers=token(keys["old"], "ehr-1")))
    assert "no key with kid 'ehr-1'" in message
    (record,) = [r for r in caplog.records if getattr(r, "event", "") == "jwks-fetch-failed"]
    assert record.reason == "HTTP 500" and record.uri == jwks.url


def _big() -> bytes:
    return json.dumps({"keys": [], "padding": "x" * MAX_JWKS_BYTES}).encode()


def _many(keys: dict[str, Any]) -> bytes:
    return json.dumps({"keys": [jwk(keys["old"], f"k{n}") for n in range(MAX_JWKS_KEYS + 1)]}).encode()


@pytest.mark.parametrize("case, reason", [
    ("larger than the byte limit", f"larger than {MAX_JWKS_BYTES} bytes"),
    ("more keys than the limit", f"the limit is {MAX_JWKS_KEYS}"),
    ("a redirect", "HTTP 302"),
    ("not JSON", "not JSON"),
    ("not a key set", "not a JWK Set"),
    ("only an encryption key", "no usable signing key"),
    ("slower than the timeout", "no answer within 0.3 s"),
])
def test_a_fetch_past_a_bound_fails_cleanly(service, jwks: JwksServer, keys, caplog, case: str, reason: str) -> None:
    jwks.body = {"larger than the byte limit": _big, "more keys than the limit": lambda: _many(keys),
                 "not JSON": lambda: b"<html>", "not a key set": lambda: b'{"keys": {}}',
                 "only an encryption key": lambda: json.dumps({"keys": [{**jwk(keys["old"], "e"), "use": "enc"}]}).encode(),
                 }.get(case, lambda: json.dumps({"keys": [jwk(keys["old"], "ehr-1")]}).encode())()
    if case == "a redirect":
        jwks.status, jwks.headers = 302, {"Location": jwks.url + "?again"}
    jwks.delay = 2.0 if case == "slower than the timeout" else 0.0
    client = service(jwks_timeout_seconds=0.3)
    started = time.monotonic()
    with caplog.at_level("WARNING", logger="covreq.auth"):
        assert "no key with kid" in diagnosis(client.get(RULESET, headers=token(keys["old"], "ehr-1")))
    assert time.monotonic() - started < 1.5
    assert [r.reason for r in caplog.records if getattr(r, "event", "") == "jwks-fetch-failed"][0].find(reason) >= 0


def test_the_jwks_uri_is_a_jku_the_issuer_may_name(service, jwks: JwksServer, keys) -> None:
    jwks.publish(**{"ehr-1": keys["old"]})
    client = service()
    assert client.get(RULESET, headers=token(keys["old"], "ehr-1", jku=jwks.url)).status_code == 200
    assert "jku" in diagnosis(client.get(RULESET, headers=token(keys["old"], "ehr-1", jku=jwks.url + "x")))


@pytest.mark.parametrize("uri, allow_http, fine", [
    ("https://ehr.example.org/jwks.json", False, True),
    ("http://127.0.0.1:8080/jwks.json", False, True),
    ("http://[::1]/jwks.json", False, True),
    ("http://localhost/jwks.json", False, True),
    ("http://ehr.example.org/jwks.json", False, False),
    ("http://ehr.example.org/jwks.json", True, True),
    ("file:///etc/passwd", True, False),
    ("https://user:secret@ehr.example.org/jwks.json", False, False),
    ("jwks.json", False, False),
])
def test_only_https_or_loopback_http_is_fetched(tmp_path: Path, uri: str, allow_http: bool, fine: bool) -> None:
    path = tmp_path / "issuers.yaml"
    path.write_text(f"issuers:\n  - iss: {EHR}\n    jwks_uri: '{uri}'\n")
    if fine:
        assert load_issuers(path, JwksPolicy(allow_http=allow_http))[EHR].remote.uri == uri  # type: ignore[union-attr]
    else:
        with pytest.raises(AuthConfigError, match="jwks_uri must be an https:// URL"):
            load_issuers(path, JwksPolicy(allow_http=allow_http))


def test_an_issuer_names_one_source_of_keys(tmp_path: Path) -> None:
    path = tmp_path / "issuers.yaml"
    path.write_text(f"issuers:\n  - iss: {EHR}\n    jwks_uri: https://ehr.example.org/jwks.json\n    jwks: ehr.json\n")
    with pytest.raises(AuthConfigError, match="exactly one of jwks, public_key, jwks_uri"):
        load_issuers(path)


def test_unusable_keys_in_a_fetched_set_are_left_out_and_the_rest_verify(service, jwks: JwksServer, keys,
                                                                          caplog) -> None:
    hostile = [1, "key", {"kty": "RSA", "n": "!!", "e": "AQAB", "kid": "bad-rsa"}, {"kty": "oct", "k": "c2VjcmV0", "kid": "hs"},
               {**jwk(keys["new"], "pinned-wrong"), "alg": "RS256"}, jwk(keys["old"], "ehr-1")]
    jwks.body = json.dumps({"keys": hostile}).encode()
    client = service()
    with caplog.at_level("WARNING", logger="covreq.auth"):
        assert client.get(RULESET, headers=token(keys["old"], "ehr-1")).status_code == 200
        assert "no key with kid 'hs'" in diagnosis(client.get(RULESET, headers=token(keys["old"], "hs")))
    assert len([r for r in caplog.records if getattr(r, "event", "") == "jwks-key-skipped"]) == 5


def test_an_encryption_key_in_a_jwks_file_stops_the_start(tmp_path: Path, keys) -> None:
    """A fetched set leaves such a key out; a file is the operator's own, so it is refused instead."""
    (tmp_path / "ehr.json").write_text(json.dumps({"keys": [{**jwk(keys["old"], "e"), "use": "enc"}]}))
    path = tmp_path / "issuers.yaml"
    path.write_text(f"issuers:\n  - iss: {EHR}\n    jwks: ehr.json\n")
    with pytest.raises(AuthConfigError, match="ehr.json key e: use 'enc' is not sig"):
        load_issuers(path)
