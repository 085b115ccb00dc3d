"""``POST /fhir/Claim/$submit`` latency at a steady request rate, with the database:
``.venv/bin/python -m bench.pas_submit [--rate 20] [--seconds 30] [--database-url URL]``.

A real ``covreq serve`` on the bundled rules (its PAS database a SQLite file in a temporary data
folder, or ``--database-url``) is sent PAS request Bundles at a fixed rate, open loop: request ``i``
leaves at ``start + i / rate`` whatever the earlier ones did, and its latency counts from then, so a
slow answer that delays the next ones is measured, not hidden. Every request is a new submission
(its own transaction identifier and Claim identifier), so every one is read, decided, stored and
answered: the kit's Submit payload with a CPT code (blepharoplasty in a hospital outpatient
department, the same in an office, eyelid repair 67904 in an OPD, a DMEPOS item), one in four with
six DocumentReferences attached. The rate is a payer's busy hour: CMS-0057-F's payers receive
thousands of prior-authorization requests a day, a few a second at peak; 20 a second is well above.
"""
from __future__ import annotations

import argparse
import asyncio
import copy
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from .http import serve
from .library import percentile

REPO = Path(__file__).resolve().parent.parent
PAYLOAD = REPO / "tests" / "fixtures" / "pas" / "kit-preset-approval_pa_submit_request_payload.json"
CPT = "http://www.ama-assn.org/go/cpt"
HCPCS = "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets"
POS = "https://www.cms.gov/Medicare/Coding/place-of-service-codes/Place_of_Service_Code_Set"
#: (system, code, place of service) of the items sent, in turn.
ITEMS = ((CPT, "15823", "22"), (CPT, "15823", "11"), (CPT, "67904", "19"), (HCPCS, "L0648", "12"))
DOCUMENTS = ("subjective-complaints", "excess-lid-skin", "visual-field-notes", "functional-impairment",
             "preop-photos", "visual-field-studies")


def submission(template: dict[str, Any], number: int) -> dict[str, Any]:
    """The ``number``-th request: the kit's payload, its insurer Medicare (the payer file's
    identifier), its item the next of :data:`ITEMS`, its identifiers its own."""
    bundle = copy.deepcopy(template)
    bundle["identifier"]["value"] = f"BENCH-{number}"
    claim = bundle["entry"][0]["resource"]
    claim["identifier"][0]["value"] = f"B{number}"
    system, code, pos = ITEMS[number % len(ITEMS)]
    item = claim["item"][0]
    item.pop("modifier", None)
    item.update(productOrService={"coding": [{"system": system, "code": code}]}, servicedDate="2024-03-14",
                locationCodeableConcept={"coding": [{"system": POS, "code": pos}]})
    insurer = next(e["resource"] for e in bundle["entry"] if e["resource"]["id"] == "InsurerExample")
    insurer["identifier"].append({"system": "urn:covreq:payer", "value": "medicare"})
    if number % 4 == 3:
        base = bundle["entry"][0]["fullUrl"].rsplit("/Claim/", 1)[0]
        for index, document in enumerate(DOCUMENTS):
            bundle["entry"].append({"fullUrl": f"{base}/DocumentReference/d{index}", "resource": {
                "resourceType": "DocumentReference", "id": f"d{index}", "status": "current",
                "type": {"coding": [{"system": "urn:covreq:documentation", "code": document}]},
                "content": [{"attachment": {"url": f"https://provider.example/{document}.pdf"}}]}})
    return bundle


async def _run(base: str, rate: float, seconds: float, template: dict[str, Any]) -> dict[str, Any]:
    """Send ``rate`` submissions a second for ``seconds``; latencies in ms and the failures."""
    total = int(rate * seconds)
    bodies = [json.dumps(submission(template, n)).encode() for n in range(1000, 1000 + total)]
    latencies: list[float] = []
    failures: list[int] = []
    async with httpx.AsyncClient(base_url=base, timeout=30,
                                 limits=httpx.Limits(max_connections=64, max_keepalive_connections=64)) as client:
        for n in range(20):  # warm-up: first calls import and compile, not measured
            await client.post("/fhir/Claim/$submit", content=json.dumps(submission(template, n)).encode(),
                              headers={"Content-Type": "application/fhir+json"})

        async def one(index: int, due: float) -> None:
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            reply = await client.post("/fhir/Claim/$submit", content=bodies[index],
                                      headers={"Content-Type": "application/fhir+json"})
            latencies.append((time.perf_counter() - due) * 1000)
            if reply.status_code != 200:
                failures.append(reply.status_code)

        start = time.perf_counter() + 0.5
        await asyncio.gather(*(one(i, start + i / rate) for i in range(total)))
    return {"requests": total, "rate_per_s": rate, "failures": len(failures),
            "median_ms": round(statistics.median(latencies), 1), "p99_ms": round(percentile(latencies, 0.99), 1),
            "max_ms": round(max(latencies), 1)}


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its figures (JSON)."""
    parser = argparse.ArgumentParser(prog="python -m bench.pas_submit", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=20.0, help="submissions per second")
    parser.add_argument("--seconds", type=float, default=30.0, help="how long to send")
    parser.add_argument("--workers", type=int, default=1, help="covreq serve --workers")
    parser.add_argument("--database-url", help="COVREQ_DATABASE_URL (default: SQLite in a temporary data folder)")
    args = parser.parse_args(argv)
    template = json.loads(PAYLOAD.read_text(encoding="utf-8"))
    with tempfile.TemporaryDirectory(prefix="covreq-bench-pas-") as data:
        env = {"COVREQ_DATA_DIR": data, "COVREQ_PAYERS": str(REPO / "service" / "payers.yaml"),
               "COVREQ_AUDIT": str(Path(data) / "audit.jsonl")}
        if args.database_url:
            env["COVREQ_DATABASE_URL"] = args.database_url
        with serve(REPO / "rules", args.workers, env) as base:
            figures = asyncio.run(_run(base, args.rate, args.seconds, template))
    figures.update(workers=args.workers, database="postgresql" if args.database_url else "sqlite")
    print(json.dumps(figures))
    return 0 if figures["failures"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
