"""The CRD order-sign calls the benchmarks send, and one timed in process:
``.venv/bin/python -m bench.crd_call``.

The IG's order-sign example with its prefetch (``tests/fixtures/crd/CRDServiceRequest.json``, its
CPT codes swapped for codes the generated tree lists, as the HTTP run sends it) is posted through
the ASGI app (no socket), many times, one call after another; the median and p99 of a call are
printed for three kinds of traffic:

- ``same``: every call the same resources (only the hookInstance differs), as the HTTP run sends;
- ``new orders``: every call's orders new (a ``meta.versionId`` of their own), the prefetch the
  same, as the hooks of one encounter send it;
- ``new searches``: as ``new orders``, and every prefetch Bundle under an id of its own (the same
  resources found again, as a FHIR server answers a search anew);
- ``all new``: every resource of every call new, so nothing checked before is seen again.
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
from typing import Any, Iterator

import httpx

from service import Settings, create_app, logs
from service.crd.discovery import SERVICES

from .generate import Tree, generate

ANCHOR = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "crd" / "CRDServiceRequest.json"
KINDS = ("same", "new orders", "new searches", "all new")
#: A tag the HTTP run's wrk script replaces in every request by a value of its own (no Lua pattern
#: characters in it).
RENEW = "RENEWEDBYWRK"
_CPT = "http://www.ama-assn.org/go/cpt"


def crd_request(tree: Tree, anchor: Path) -> dict[str, Any]:
    """The CRD order-sign anchor (with its prefetch), its CPT billing options swapped for listed codes."""
    body = json.loads(anchor.read_text())
    codes = iter([x.code for x in tree.listings if x.payer == tree.payers[0] and x.code.isdigit()])

    def swap(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("system") == _CPT and "code" in node:
                node["code"] = next(codes)
            for value in node.values():
                swap(value)
        elif isinstance(node, list):
            for value in node:
                swap(value)
    swap(body["context"]["draftOrders"])
    return body


def payer_mapping(tree: Tree, work: Path) -> Path:
    """A payer mapping file in ``work`` naming the tree's first payer Acme Health Plan, by name:
    the IG example names its payer by display only."""
    payers = work / "payers.yaml"
    payers.write_text(f"match_by_name: true\npayers:\n  - payer: {tree.payers[0]}\n    label: Acme Health Plan\n"
                      "    names: [Acme Health Plan]\n")
    return payers


def order_sign_id() -> str:
    """The id under which covreq offers its order-sign service."""
    return next(sid for sid, hook in SERVICES.items() if hook == "order-sign")


def _resources(value: Any) -> Iterator[dict[str, Any]]:
    """A resource, or a Bundle and the resources of its entries."""
    if isinstance(value, dict) and "resourceType" in value:
        yield value
        for entry in value.get("entry", []) if value["resourceType"] == "Bundle" else []:
            yield from _resources(entry.get("resource"))


def variant(body: dict[str, Any], kind: str, tag: str) -> bytes:
    """The call tagged ``tag`` (a FHIR id) of the given kind of traffic, as JSON."""
    call = copy.deepcopy(body)
    call["hookInstance"] = f"bench-{tag}"
    orders, prefetch = call["context"]["draftOrders"], list(call["prefetch"].values())
    renewed = {"same": [], "new orders": [orders], "new searches": [orders], "all new": [orders, *prefetch]}[kind]
    for value in prefetch if kind == "new searches" else []:
        if isinstance(value, dict) and value.get("resourceType") == "Bundle":
            value["id"] = tag
    for value in renewed:
        for resource in _resources(value):  # Bundles too: nothing renewed was seen before
            resource["meta"] = {**resource.get("meta", {}), "versionId": tag}
    return json.dumps(call).encode()


async def _post_all(app: Any, path: str, calls: list[bytes]) -> list[float]:
    seconds = []
    headers = {"Content-Type": "application/json"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench") as client:
        for call in calls:
            began = time.perf_counter()
            response = await client.post(path, content=call, headers=headers)
            seconds.append(time.perf_counter() - began)
            if response.status_code != 200:
                raise RuntimeError(f"the call was answered {response.status_code}: {response.text[:300]}")
    return seconds


def run(calls: int, size: int) -> dict[str, dict[str, float]]:
    """Median and p99 ms of ``calls`` calls of each kind, after a warm-up, on a generated tree."""
    logs.configure(True, "INFO")  # as covreq serve logs (to stderr)
    with tempfile.TemporaryDirectory(prefix="covreq-crd-call-") as tmp:
        work = Path(tmp)
        tree = generate(size, work / "tree")
        app = create_app(str(tree.root), Settings(payers=payer_mapping(tree, work), audit_path=work / "audit.jsonl"))
        body, path = crd_request(tree, ANCHOR), "/cds-services/" + order_sign_id()
        results = {}
        for kind in KINDS:
            asyncio.run(_post_all(app, path, [variant(body, kind, f"w{n}") for n in range(20)]))
            seconds = sorted(asyncio.run(_post_all(app, path, [variant(body, kind, f"c{n}") for n in range(calls)])))
            results[kind] = {"median_ms": round(statistics.median(seconds) * 1000, 3),
                             "p99_ms": round(seconds[int(len(seconds) * 0.99)] * 1000, 3)}
    return results


def main(argv: list[str] | None = None) -> int:
    """Print one JSON line per kind of traffic."""
    parser = argparse.ArgumentParser(prog="python -m bench.crd_call", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=1000, help="calls of each kind")
    parser.add_argument("--size", type=int, default=100, help="rules of the generated tree")
    args = parser.parse_args(argv)
    for kind, figures in run(args.calls, args.size).items():
        print(json.dumps({"traffic": kind, **figures}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
