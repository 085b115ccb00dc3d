"""The keys that sign DTR contexts (service/dtr/signing.py): sealing and opening, foreign, altered,
expired and retired keys, rotation, the key file and the random key of an unconfigured replica."""
from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import os
import re
from pathlib import Path
from typing import Any

import jwt
import pytest
from dtr_helpers import REPO
from hypothesis import given, settings
from hypothesis import strategies as st

from service import server
from service.dtr.signing import CONTEXT_URL, LEEWAY, TOKEN_TYPE, Context, Keyring
from service.fhir.outcome import FhirError
from service.settings import Settings

CONTEXT = Context(("http://x/fhir/Questionnaire/p|1",), {"code": "15823", "date_of_service": "2024-03-14"},
                  ("Coverage/cov-1",), ("ServiceRequest/sr-1",), "Patient/pat-1")
SECRET_1, SECRET_2 = "a" * 32, "b" * 32
OPERATIONS = (REPO / "docs" / "operations.md").read_text(encoding="utf-8")


def keyring(*kids: str, active: str | None = None, secret: str = SECRET_1) -> Keyring:
    return Keyring({kid: secret + kid for kid in kids}, active or kids[0], dt.timedelta(days=30))


def response(extension: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "QuestionnaireResponse", "extension": [extension]}


def refusal(keys: Keyring, given: dict[str, Any]) -> str:
    with pytest.raises(FhirError) as raised:
        keys.open(given)
    assert raised.value.status == 422
    return raised.value.message


def test_a_sealed_context_opens_with_the_same_keys() -> None:
    keys = keyring("k1")
    signed = keys.open(response(keys.seal(CONTEXT)))
    assert signed.context == CONTEXT and signed.kid == "k1"
    assert signed.expires - signed.issued == 30 * 86400
    assert jwt.get_unverified_header(keys.seal(CONTEXT)["valueString"])["typ"] == TOKEN_TYPE


def test_a_context_sealed_again_keeps_when_it_was_issued_and_expires() -> None:
    keys = keyring("k1")
    first = keys.open(response(keys.seal(CONTEXT, now=dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=2))))
    again = keys.open(response(keys.seal(CONTEXT, first)))
    assert (again.issued, again.expires) == (first.issued, first.expires)


@pytest.mark.parametrize("other, message", [
    (keyring("k2"), "signed with key 'k2', which this server does not hold"),
    (keyring("k1", secret=SECRET_2), "does not verify"),
])
def test_a_context_signed_with_another_key_is_refused(other: Keyring, message: str) -> None:
    assert message in refusal(keyring("k1"), response(other.seal(CONTEXT)))


def test_an_altered_token_is_refused() -> None:
    keys = keyring("k1")
    header, payload, signature = keys.seal(CONTEXT)["valueString"].split(".")
    claims = jwt.decode(keys.seal(CONTEXT)["valueString"], options={"verify_signature": False})
    forged = jwt.encode({**claims, "known": {**claims["known"], "code": "99213"}}, "guess" * 8,
                        algorithm="HS256", headers={"kid": "k1", "typ": TOKEN_TYPE})
    assert "does not verify" in refusal(keys, response({"url": CONTEXT_URL, "valueString": forged}))
    spliced = ".".join([header, forged.split(".")[1], signature])
    assert "does not verify" in refusal(keys, response({"url": CONTEXT_URL, "valueString": spliced}))


@pytest.mark.parametrize("extensions, message", [
    ([], "carries no context signed by this server"),
    ([{"url": CONTEXT_URL, "valueString": "x"}] * 2, "one signed context"),
    ([{"url": CONTEXT_URL, "valueInteger": 1}], "one signed context"),
    ([{"url": CONTEXT_URL, "valueString": "not a token"}], "not a JWS"),
])
def test_a_missing_doubled_or_malformed_context_is_refused(extensions: list[Any], message: str) -> None:
    assert message in refusal(keyring("k1"), {"resourceType": "QuestionnaireResponse", "extension": extensions})


def test_unsigned_tokens_and_other_token_types_are_refused() -> None:
    keys = keyring("k1")
    claims = jwt.decode(keys.seal(CONTEXT)["valueString"], options={"verify_signature": False})
    unsigned = jwt.encode(claims, None, algorithm="none", headers={"kid": "k1", "typ": TOKEN_TYPE})
    assert "signed with HS256" in refusal(keys, response({"url": CONTEXT_URL, "valueString": unsigned}))
    plain = jwt.encode(claims, SECRET_1 + "k1", algorithm="HS256", headers={"kid": "k1"})
    assert TOKEN_TYPE in refusal(keys, response({"url": CONTEXT_URL, "valueString": plain}))


def test_an_expired_context_is_refused() -> None:
    keys = keyring("k1")
    sealed = keys.seal(CONTEXT, now=dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=31))
    assert "expired" in refusal(keys, response(sealed))


def test_after_rotation_the_old_key_still_verifies_and_the_active_key_signs() -> None:
    old, rotated, retired = keyring("k1"), keyring("k1", "k2", active="k2"), keyring("k2")
    sealed = old.seal(CONTEXT)
    signed = rotated.open(response(sealed))
    resealed = rotated.seal(signed.context, signed)
    assert jwt.get_unverified_header(resealed["valueString"])["kid"] == "k2"
    assert retired.open(response(resealed)).context == CONTEXT
    assert "'k1', which this server does not hold" in refusal(retired, response(sealed))


def test_the_documented_key_file_loads(tmp_path: Path) -> None:
    example = re.search(r"<!-- example: dtr-keys -->\n```yaml\n(.*?)```", OPERATIONS, re.S)
    assert example is not None
    (tmp_path / "keys.yaml").write_text(example[1])
    keys = Keyring.load(tmp_path / "keys.yaml")
    assert keys.active == "dtr-2026-12" and set(keys.kids) == {"dtr-2026-12", "dtr-2026-06"}
    assert keys.lifetime == dt.timedelta(days=30)


@pytest.mark.parametrize("text, message", [
    ("- a\n", "expected a mapping with 'active' and 'keys'"),
    ("active: k1\nkeys: {k1: short}\n", "at least 32 characters"),
    (f"active: k2\nkeys: {{k1: {SECRET_1}}}\n", "'active' must name one of the keys (k1)"),
    (f"active: k1\nlifetime_days: 0\nkeys: {{k1: {SECRET_1}}}\n", "'lifetime_days' must be a whole number"),
    (f"active: k1\nkeys: {{k1: {SECRET_1}}}\nalgorithm: none\n", "unknown setting(s) algorithm"),
])
def test_an_unusable_key_file_is_refused_naming_the_file(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "keys.yaml").write_text(text)
    with pytest.raises(ValueError) as raised:
        Keyring.load(tmp_path / "keys.yaml")
    assert str(raised.value).startswith(str(tmp_path / "keys.yaml")) and message in str(raised.value)


def test_without_a_key_file_the_keys_are_random_and_a_warning_says_so(caplog: pytest.LogCaptureFixture,
                                                                      tmp_path: Path) -> None:
    with caplog.at_level(logging.WARNING, logger="covreq.dtr"):
        first, second = Keyring.from_settings(Settings()), Keyring.from_settings(Settings())
    assert first.ephemeral and first.kids != second.kids
    assert [r.event for r in caplog.records] == ["dtr-keys-ephemeral"] * 2  # type: ignore[attr-defined]
    (tmp_path / "keys.yaml").write_text(f"active: k1\nkeys: {{k1: {SECRET_1}}}\n")
    assert Settings.from_env({"COVREQ_DTR_KEYS": str(tmp_path / "keys.yaml")}).dtr_keys == tmp_path / "keys.yaml"
    assert not Keyring.from_settings(Settings(dtr_keys=tmp_path / "keys.yaml")).ephemeral


def test_the_workers_of_an_unconfigured_replica_share_one_random_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COVREQ_DTR_KEYS", raising=False)
    with server._replica_key():
        path = Path(os.environ["COVREQ_DTR_KEYS"])
        assert path.stat().st_mode & 0o077 == 0
        worker_1, worker_2 = Keyring.load(path), Keyring.load(path)
        assert worker_2.open(response(worker_1.seal(CONTEXT))).context == CONTEXT
    assert "COVREQ_DTR_KEYS" not in os.environ and not path.exists()


def test_a_configured_key_file_is_left_to_the_workers(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("COVREQ_DTR_KEYS", str(tmp_path / "keys.yaml"))
    with server._replica_key():
        assert os.environ["COVREQ_DTR_KEYS"] == str(tmp_path / "keys.yaml")


def test_a_well_signed_token_that_holds_no_context_is_refused() -> None:
    keys = keyring("k1")
    now = int(dt.datetime.now(dt.timezone.utc).timestamp())
    token = jwt.encode({"iss": "covreq", "iat": now, "exp": now + 60, "form": 5, "known": [], "coverage": [],
                        "context": [], "subject": None}, SECRET_1 + "k1", algorithm="HS256",
                       headers={"kid": "k1", "typ": TOKEN_TYPE})
    assert "does not hold what a DTR context holds" in refusal(keys, response({"url": CONTEXT_URL, "valueString": token}))


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=80), st.lists(st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                                       "0123456789-_=", max_size=40), min_size=1, max_size=4).map(".".join),
                 st.tuples(st.dictionaries(st.sampled_from(["alg", "kid", "typ", "b64", "crit"]),
                                           st.one_of(st.none(), st.integers(), st.text(max_size=8), st.just(TOKEN_TYPE),
                                                     st.just("HS256"), st.just("k1"), st.lists(st.integers()))),
                           st.binary(max_size=40)).map(
                     lambda parts: ".".join([base64.urlsafe_b64encode(json.dumps(parts[0]).encode()).decode().rstrip("="),
                                             base64.urlsafe_b64encode(parts[1]).decode().rstrip("="), "c2ln"]))))
def test_any_token_is_opened_or_refused_with_a_422_never_another_error(token: str) -> None:
    refusal(keyring("k1"), response({"url": CONTEXT_URL, "valueString": token}))


def test_the_clock_skew_the_operations_guide_allows_is_the_leeway() -> None:
    assert LEEWAY == 60 and "clocks must agree within a minute" in OPERATIONS
    keys = keyring("k1")
    ahead = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=30)
    assert keys.open(response(keys.seal(CONTEXT, now=ahead))).context == CONTEXT
    assert "not yet valid" in refusal(keys, response(keys.seal(CONTEXT, now=ahead + dt.timedelta(minutes=5))))
