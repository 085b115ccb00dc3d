"""CRD calls with many orders and many Coverages: ``.venv/bin/python -m bench.crd_scale``.

An order-sign call of N ServiceRequests (CPT 15823) whose prefetch holds N Coverages, one of
Medicare and the others of payers covreq does not serve, is posted to the service in process, on
the bundled rules. With the default limits the call is refused (413) before any FHIR is parsed;
with the limits raised to N it is answered, and the time per order shows whether the work grows
linearly. Target (issue 12): 300 orders x 300 Coverages answered or refused in under 3 s.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from service import Settings, create_app

REPO = Path(__file__).resolve().parent.parent
CPT = "http://www.ama-assn.org/go/cpt"
POS = "https://www.cms.gov/Medicare/Coding/place-of-service-codes/Place_of_Service_Code_Set"


def call(orders: int, coverages: int) -> dict[str, Any]:
    """An order-sign call with ``orders`` ServiceRequests and ``coverages`` Coverages."""
    entries = [{"resource": {
        "resourceType": "ServiceRequest", "id": f"sr{n}", "status": "draft", "intent": "order",
        "subject": {"reference": "Patient/p1"}, "code": {"coding": [{"system": CPT, "code": "15823"}]},
        "locationCode": [{"coding": [{"system": POS, "code": "22"}]}]}} for n in range(orders)]
    covered = [{"resource": {
        "resourceType": "Coverage", "id": f"c{n}", "status": "active", "beneficiary": {"reference": "Patient/p1"},
        "payor": [{"identifier": {"system": "urn:covreq:payer", "value": "medicare"}, "display": "Medicare"}
                  if n == 0 else
                  {"identifier": {"system": "http://example.org/payer-ids", "value": f"OTHER-{n}"},
                   "display": f"Other Health {n}"}]}} for n in range(coverages)]
    return {"hook": "order-sign", "hookInstance": "bench", "context": {
        "userId": "Practitioner/u1", "patientId": "p1",
        "draftOrders": {"resourceType": "Bundle", "type": "collection", "entry": entries}},
        "prefetch": {"coverage": {"resourceType": "Bundle", "type": "searchset", "entry": covered}}}


def measure(client: TestClient, body: bytes, rounds: int) -> dict[str, Any]:
    """Median and worst seconds of ``rounds`` posts of ``body``, and the status they got."""
    seconds, statuses = [], set()
    for _ in range(rounds):
        began = time.perf_counter()
        response = client.post("/cds-services/order-sign-crd", content=body,
                               headers={"Content-Type": "application/json"})
        seconds.append(time.perf_counter() - began)
        statuses.add(response.status_code)
    return {"median_s": round(statistics.median(seconds), 4), "max_s": round(max(seconds), 4),
            "status": sorted(statuses), "bytes": len(body)}


def run(sizes: list[int], rounds: int) -> list[dict[str, Any]]:
    """For each size N, N x N refused under the default limits and answered under raised ones."""
    results = []
    with tempfile.TemporaryDirectory(prefix="covreq-crd-scale-") as tmp:
        audit = Path(tmp) / "audit.jsonl"
        capped = TestClient(create_app(str(REPO / "rules"), Settings(audit_path=audit)))
        top = max(sizes)
        raised = TestClient(create_app(str(REPO / "rules"), Settings(
            audit_path=audit, max_body_bytes=64 * 1024 * 1024, crd_max_orders=top, crd_max_coverages=top)))
        for size in sizes:
            body = json.dumps(call(size, size)).encode()
            refused, answered = measure(capped, body, rounds), measure(raised, body, rounds)
            results.append({"orders": size, "coverages": size, "default_limits": refused,
                            "raised_limits": answered,
                            "ms_per_order": round(answered["median_s"] / size * 1000, 3)})
    return results


def main(argv: list[str] | None = None) -> int:
    """Print one JSON line per size."""
    parser = argparse.ArgumentParser(prog="python -m bench.crd_scale", description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 300])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    for result in run(args.sizes, args.rounds):
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
