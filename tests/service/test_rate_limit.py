"""Rate limiting per client (issue 26, item 7): a token bucket per API key, JWT issuer and subject,
or address; 429 with Retry-After in each API's error shape; bounded memory; counted in /metrics."""
from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from serving import served
from service.api_keys import hash_key
from service.app import create_app
from service.auth import Caller
from service.ratelimit import Rate, RateLimiter, client_of, limiter_from
from service.settings import Settings
from tests.service.test_auth import CDS_PATH, auth_files, bearer, keys, secured, token  # noqa: F401 (fixtures)

FIXTURE_RULES = Path(__file__).parent / "fixtures" / "rules"
KEYS = {"billing-office": "k3y-for-the-billing-office-0001", "front-desk": "k3y-for-the-front-desk-00002"}


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize("text, count, seconds", [("100/60s", 100, 60.0), ("100/m", 100, 60.0), ("5/s", 5, 1.0),
                                                  ("1000/1h", 1000, 3600.0), (" 3 / 2.5s ", 3, 2.5)])
def test_a_rate_is_requests_per_time(text: str, count: int, seconds: float) -> None:
    assert Rate.parse(text) == Rate(count, seconds, count)
    assert Rate.parse(text, burst=7).burst == 7


@pytest.mark.parametrize("text", ["100", "100/", "0/s", "-1/s", "1/0s", "1/d", "lots/s", "1/1e9s"])
def test_a_rate_that_is_not_one_is_refused_naming_the_setting(text: str) -> None:
    with pytest.raises(ValueError, match="COVREQ_RATE_LIMIT is requests per time"):
        Rate.parse(text)


def test_a_burst_without_a_rate_or_below_one_stops_the_service_at_start() -> None:
    with pytest.raises(ValueError, match="COVREQ_RATE_LIMIT_BURST needs COVREQ_RATE_LIMIT"):
        limiter_from(None, 10)
    with pytest.raises(ValueError, match="COVREQ_RATE_LIMIT_BURST must be at least 1"):
        limiter_from("10/s", 0)
    assert limiter_from(None, None) is None
    with pytest.raises(ValueError, match="COVREQ_RATE_LIMIT"):
        create_app(str(FIXTURE_RULES), Settings(rate_limit="often"))
    assert Settings.from_env({"COVREQ_RATE_LIMIT": "5/s", "COVREQ_RATE_LIMIT_BURST": "9"}).rate_limit_burst == 9


def test_the_bucket_allows_a_burst_then_refills_evenly() -> None:
    clock = Clock()
    limiter = RateLimiter(Rate.parse("6/60s", burst=3), clock=clock)  # a token every 10 s, 3 at most
    assert [limiter.take(("address", "a")) for _ in range(3)] == [0, 0, 0]
    assert limiter.take(("address", "a")) == pytest.approx(10.0)
    clock.now += 4
    assert limiter.take(("address", "a")) == pytest.approx(6.0)  # a refusal spends nothing
    clock.now += 6
    assert limiter.take(("address", "a")) == 0
    assert limiter.take(("address", "b")) == 0  # another client has its own bucket
    clock.now += 1000  # a long rest fills the bucket to the burst, no further
    assert [limiter.take(("address", "a")) for _ in range(4)][-1] > 0


def test_the_client_table_stays_bounded_while_addresses_rotate() -> None:
    """An attacker rotating addresses cannot grow the table past its bound; a forgotten client
    only ever had a full bucket (entries last as long as a bucket takes to fill)."""
    clock = Clock()
    limiter = RateLimiter(Rate.parse("2/s"), max_clients=100, clock=clock)
    for n in range(10_000):
        limiter.take(("address", f"10.{n // 65536}.{n // 256 % 256}.{n % 256}"))
    assert len(limiter) == 100
    limiter.take(("api-key", "steady"))
    limiter.take(("api-key", "steady"))
    assert limiter.take(("api-key", "steady")) > 0
    clock.now += 0.9  # not yet full again: still remembered, still limited
    assert len(limiter) == 100 and limiter.take(("api-key", "steady")) == 0
    assert limiter.take(("api-key", "steady")) > 0
    clock.now += 5  # every bucket full again: the table empties itself
    limiter.take(("address", "x"))
    assert len(limiter) == 1


def test_clients_are_named_by_their_credentials_or_address() -> None:
    assert client_of({"state": {"caller": Caller("api-key", "billing-office")}, "client": ("10.0.0.1", 1)}) == \
        ("api-key", "billing-office", "")
    assert client_of({"state": {"caller": Caller("smart", "dtr-app", "dtr-app")}}) == ("smart", "dtr-app", "dtr-app")
    assert client_of({"state": {"caller": Caller("jwt", "https://ehr.example", "svc-1", "t")}}) == \
        ("jwt", "https://ehr.example", "svc-1")
    assert client_of({"state": {}, "client": ("10.0.0.1", 5555)}) == ("address", "10.0.0.1")
    assert client_of({"client": None}) == ("address", "")


def _limited(text: str, client: str) -> float:
    return sum(s.value for family in text_string_to_metric_families(text) for s in family.samples
               if s.name == "covreq_rate_limited_total" and s.labels.get("client") == client)


def test_a_client_past_the_limit_gets_429_with_retry_after_and_recovers(tmp_path: Path) -> None:
    """On loopback: an API key past 3 requests per 2 s gets 429 with Retry-After in the v1 error
    shape, another key is unaffected, anonymous callers are limited by address (FHIR and CDS Hooks
    paths answer an OperationOutcome), the probes never are, and after Retry-After it may go on."""
    keys = tmp_path / "keys.yaml"
    keys.write_text("".join(f"{name}: {hash_key(key)}\n" for name, key in KEYS.items()))
    env = {"COVREQ_RATE_LIMIT": "3/2s", "COVREQ_API_KEYS": str(keys)}
    billing, desk = ({"X-API-Key": key} for key in KEYS.values())
    with served(tmp_path, "--rules", str(FIXTURE_RULES), env=env) as service, httpx.Client(base_url=service.base) as http:
        assert [http.get("/v1/ruleset", headers=billing).status_code for _ in range(3)] == [200] * 3
        refused = http.get("/v1/ruleset", headers=billing)
        assert refused.status_code == 429
        retry = int(refused.headers["retry-after"])
        assert 1 <= retry <= 2
        error = refused.json()["error"]
        assert error["status"] == 429 and "3 requests per 2 seconds" in error["message"]
        assert refused.json()["ruleset"] == refused.headers["x-covreq-ruleset"]
        assert http.get("/v1/ruleset", headers=desk).status_code == 200  # another client
        for _ in range(10):
            assert http.get("/healthz").status_code == 200 and http.get("/readyz").status_code == 200
        assert [http.get("/fhir/metadata").status_code for _ in range(3)] == [200] * 3
        for path in ("/fhir/metadata", "/cds-services"):  # the address's bucket is empty now
            outcome = http.get(path)
            assert outcome.status_code == 429 and outcome.headers["retry-after"].isdigit()
            assert outcome.json()["resourceType"] == "OperationOutcome"
            assert outcome.json()["issue"][0]["code"] == "throttled"
        time.sleep(retry)
        assert http.get("/v1/ruleset", headers=billing).status_code == 200
        time.sleep(2)
        text = http.get("/metrics").text
        assert _limited(text, "api-key") == 1 and _limited(text, "address") == 2 and _limited(text, "jwt") == 0
        assert 'status="429"' in text


def test_a_jwt_client_is_its_issuer_and_subject(secured, keys, ig_order_sign) -> None:
    """CDS Hooks callers are limited per JWT issuer and ``sub``: an EHR client past the limit gets
    the OperationOutcome 429, another subject of the same issuer goes on."""
    client = secured(rate_limit="2/60s")
    for _ in range(2):
        assert client.post(CDS_PATH, json=ig_order_sign(), headers=bearer(token(keys))).status_code != 429
    refused = client.post(CDS_PATH, json=ig_order_sign(), headers=bearer(token(keys)))
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) == 30
    assert refused.json()["issue"][0]["code"] == "throttled"
    other = client.post(CDS_PATH, json=ig_order_sign(), headers=bearer(token(keys, sub="another-ehr-client")))
    assert other.status_code != 429
    text = client.get("/metrics").text
    assert _limited(text, "jwt") == 1 and _limited(text, "address") == 0
