"""The attacker's suite, output: the largest call allowed costs a bounded answer and a bounded
audit record (issue 24, item 16: 100 orders x 50 codes, 338 KB in, came back as 4.4 MB and wrote
an 811 KB audit line)."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import orjson
from crd_calls import CPT, assert_ok, assert_outcome, order_sign, post, service_request

from service.audit import MAX_DECISIONS


def _orders(count: int, codes: int) -> list[dict[str, Any]]:
    """``count`` orders of ``codes`` billing codes each, a few of them with a policy."""
    orders = []
    for n in range(count):
        order = service_request(f"s{n}", "15823", pos="22")
        order["code"]["coding"] = [{"system": CPT, "code": str(15820 + k) if k < 5 else str(10000 + k)}
                                   for k in range(codes)]
        orders.append(order)
    return orders


def _last_record(tmp_path: Path) -> tuple[dict[str, Any], int]:
    line = (tmp_path / "audit.jsonl").read_bytes().splitlines()[-1]
    return json.loads(line), len(line)


def test_regression_the_largest_crd_call_came_back_as_4_4_mb(client, tmp_path: Path) -> None:
    issue = assert_outcome(post(client, order_sign(*_orders(100, 50))), 413, "context.draftOrders")
    assert "carry 5000 billing codes; this service answers at most 1000 per call (COVREQ_CRD_MAX_LINES)" \
        in issue["diagnostics"]
    record, _ = _last_record(tmp_path)
    assert record["status"] == 413


def test_regression_the_largest_call_wrote_an_811_kb_audit_line(client, crd, tmp_path: Path) -> None:
    reply = post(client, order_sign(*_orders(20, 50)))  # 1,000 lines: the most allowed
    assert_ok(reply, crd)
    assert len(reply.content) < 1_500_000
    record, size = _last_record(tmp_path)
    assert size < 16_384, f"an audit line of {size} bytes"
    assert record["decisions_total"] == 1000 and len(record["decisions"]) == MAX_DECISIONS
    assert sum(record["answers"].values()) == 1000
    assert record["decisions"][0]["order"] == "ServiceRequest/s0" and record["decisions"][0]["coverage_assertion_id"]
    assert len(record["omitted_sha256"]) == 64


def test_a_v1_audit_record_keeps_the_first_lines_and_a_digest_of_the_rest(client, tmp_path: Path) -> None:
    services = [{"code": "15823"}, {"code": "77061"}, {"code": "99213"}] * 300
    answer = client.post("/v1/requirements", json={"payer": "acme", "place_of_service": "22", "services": services})
    assert answer.status_code == 200
    record, size = _last_record(tmp_path)
    assert size < 16_384
    written = [{k: d[k] for k in ("code", "system", "pa_needed", "covered")} for d in answer.json()["decisions"]]
    assert record["decisions"] == written[:MAX_DECISIONS] and record["decisions_total"] == 900
    assert record["omitted_sha256"] == hashlib.sha256(orjson.dumps(written[MAX_DECISIONS:])).hexdigest()
    assert record["answers"] == {k: sum(1 for d in written if str(d["pa_needed"]) == k) for k in record["answers"]}


def test_a_small_call_is_audited_in_full_as_before(client, tmp_path: Path) -> None:
    assert client.post("/v1/requirements", json={"payer": "acme", "services": [{"code": "15823"}]}).status_code == 200
    record, size = _last_record(tmp_path)
    assert len(record["decisions"]) == 1 and "decisions_total" not in record and size < 512


def test_an_answer_larger_than_allowed_is_a_413_naming_the_limit(make_client, tmp_path: Path) -> None:
    client = make_client(max_response_bytes=20_000)
    services = [{"code": "15823"}] * 100
    refused = client.post("/v1/requirements", json={"payer": "acme", "place_of_service": "22", "services": services})
    assert refused.status_code == 413
    assert "larger than 20000 bytes (COVREQ_MAX_RESPONSE_BYTES)" in refused.json()["error"]["message"]
    assert _last_record(tmp_path)[0]["status"] == 413
    issue = assert_outcome(post(client, order_sign(*_orders(5, 10))), 413, "")
    assert "COVREQ_MAX_RESPONSE_BYTES" in issue["diagnostics"]
    assert _last_record(tmp_path)[0]["status"] == 413
    assert client.post("/v1/requirements", json={"payer": "acme", "services": services[:1]}).status_code == 200
