"""CDS Hooks JWTs naming a ``jku``: the key set is fetched from a real JWKS server on loopback when
the operator lists the URL for the issuer, cached, refreshed when a token names a key it lacks (key
rotation), never more often than the policy allows, and never from a URL not listed."""
from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

import loopback
from service.auth import AuthConfigError, load_issuers
from service.jwks import MAX_JWKS_BYTES

SERVICE_URL = "https://covreq.example.org"
CDS_PATH = "/cds-services/order-sign-crd"
EHR = "https://ehr.example.org"


class JwksServer:
    """A JWKS document on loopback that a test can change, counting the fetches."""

    def __init__(self) -> None:
        self.document: bytes = b'{"keys": []}'
        self.fetches = 0
        server = self

        class Handler(loopback.QuietHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                server.fetches += 1
                self.send(200, server.document)

        self.http = loopback.start(Handler)
        self.url = f"{loopback.origin(self.http)}/jwks.json"

    def serve(self, *keys: tuple[str, Any]) -> None:
        """Publish the public halves of ``(kid, private key)`` pairs."""
        self.document = json.dumps({"keys": [
            {**json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key())), "kid": kid, "use": "sig", "alg": "ES256"}
            for kid, key in keys]}).encode()


@pytest.fixture()
def jwks() -> Iterator[JwksServer]:
    server = JwksServer()
    yield server
    loopback.stop(server.http)


def trusting(make_client, tmp_path: Path, jwks: JwksServer, **settings: Any) -> Any:
    """A client trusting ``EHR`` with no keys of its own: only those at its listed ``jku``."""
    (tmp_path / "issuers.yaml").write_text(f"issuers:\n  - iss: {EHR}\n    jku: [{jwks.url}]\n")
    return make_client(auth_issuers=tmp_path / "issuers.yaml", service_url=SERVICE_URL, **settings)


@pytest.fixture()
def secured(make_client, tmp_path: Path, jwks: JwksServer) -> Any:
    """``trusting``, fetching as the default policy says."""
    return trusting(make_client, tmp_path, jwks)


def signed(key: Any, kid: str, jku_url: str) -> dict[str, str]:
    now = int(time.time())
    claims = {"iss": EHR, "aud": SERVICE_URL + CDS_PATH, "iat": now, "exp": now + 60, "jti": uuid.uuid4().hex}
    token = jwt.encode(claims, key, algorithm="ES256", headers={"typ": "JWT", "kid": kid, "jku": jku_url})
    return {"Authorization": f"Bearer {token}"}


def status(client: Any, headers: dict[str, str], ig_order_sign: Any) -> int:
    return client.post(CDS_PATH, json=ig_order_sign(), headers=headers).status_code


def test_a_token_naming_a_listed_jku_is_verified_with_the_keys_fetched_there_once(secured, jwks, ig_order_sign) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    jwks.serve(("k1", key))
    assert status(secured, signed(key, "k1", jwks.url), ig_order_sign) == 200
    assert status(secured, signed(key, "k1", jwks.url), ig_order_sign) == 200
    assert jwks.fetches == 1  # cached


def test_a_rotated_key_is_fetched_when_a_token_names_it(make_client, tmp_path, jwks, ig_order_sign) -> None:
    secured = trusting(make_client, tmp_path, jwks, jwks_refresh_seconds=0.0)  # no wait between fetches
    old, new = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    jwks.serve(("k1", old))
    assert status(secured, signed(old, "k1", jwks.url), ig_order_sign) == 200
    jwks.serve(("k2", new))  # the EHR rotates its key
    assert status(secured, signed(new, "k2", jwks.url), ig_order_sign) == 200
    assert status(secured, signed(old, "k1", jwks.url), ig_order_sign) == 401  # retired
    assert jwks.fetches == 3


def test_invented_kids_fetch_at_most_once_per_refresh_interval(secured, jwks, ig_order_sign) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    jwks.serve(("k1", key))
    assert status(secured, signed(key, "k1", jwks.url), ig_order_sign) == 200
    for number in range(10):
        assert status(secured, signed(key, f"invented-{number}", jwks.url), ig_order_sign) == 401
    assert jwks.fetches == 1  # the default policy: one fetch a minute at most


def test_a_jku_not_listed_for_the_issuer_is_never_fetched(secured, jwks, ig_order_sign) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    jwks.serve(("k1", key))
    response = secured.post(CDS_PATH, json=ig_order_sign(), headers=signed(key, "k1", jwks.url + "?other"))
    assert response.status_code == 401 and "is not a key set trusted for" in response.text
    assert jwks.fetches == 0


def test_a_key_set_too_large_is_not_used(secured, jwks, ig_order_sign) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    jwks.serve(("k1", key))
    jwks.document = jwks.document[:-2] + b"," + b" " * MAX_JWKS_BYTES + b"]}"
    assert status(secured, signed(key, "k1", jwks.url), ig_order_sign) == 401
    assert jwks.fetches == 1


@pytest.mark.parametrize("jku_list", ["[http://ehr.example.org/jwks.json]", "https://ehr.example.org/jwks.json"])
def test_a_jku_that_is_plain_http_beyond_loopback_or_not_a_list_stops_the_start(tmp_path: Path, jku_list: str) -> None:
    (tmp_path / "issuers.yaml").write_text(f"issuers:\n  - iss: {EHR}\n    jku: {jku_list}\n")
    with pytest.raises(AuthConfigError, match="jku of issuer"):
        load_issuers(tmp_path / "issuers.yaml")
