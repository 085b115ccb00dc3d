"""Run the covreq benchmarks and print the results table: ``.venv/bin/python -m bench``.

Sizes, rounds and durations are capped so the full run stays within a few minutes on two cores;
``--quick`` is a smoke run whose figures mean nothing. All HTTP traffic goes to 127.0.0.1.
"""
from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from . import condition, http
from .crd_call import ANCHOR, RENEW, crd_request, order_sign_id, payer_mapping, variant
from .generate import Tree, generate, request_mix
from .report import render

_CHILD_TIMEOUT_S = 400


def library_run(tree: Tree, mix: list[dict[str, Any]], rounds: int, peers: list[str], work: Path) -> dict[str, Any]:
    """Library figures for one tree, measured in a fresh interpreter."""
    mix_file = work / f"mix-{tree.rules}.json"
    mix_file.write_text(json.dumps(mix))
    command = [sys.executable, "-m", "bench.library", str(tree.root), str(mix_file), "--rounds", str(rounds)]
    if peers:
        command += ["--peers", *peers]
    out = subprocess.run(command, capture_output=True, text=True, check=True, timeout=_CHILD_TIMEOUT_S,
                         cwd=Path(__file__).resolve().parent.parent).stdout
    return {"rules": tree.rules, "files": tree.files, **json.loads(out)}


def http_run(tree: Tree, mix: list[dict[str, Any]], seconds: int, work: Path, anchor: Path) -> dict[str, Any]:
    """Throughput, paced latency and CRD order-sign latency against ``covreq serve --workers 2``."""
    payers = payer_mapping(tree, work)
    bodies = [m["body"] for m in mix]
    result: dict[str, Any] = {"rules": tree.rules}
    with http.serve(tree.root, 2, {"COVREQ_PAYERS": str(payers), "COVREQ_AUDIT": str(work / "audit.jsonl")}) as base:
        http.warm(base, "/v1/requirements", bodies)
        result["max"] = http.wrk(base, "/v1/requirements", bodies, seconds, connections=32, distinct="max")
        result["paced"] = http.wrk(base, "/v1/requirements", bodies, seconds, connections=8, rate=300, distinct="paced")
        if anchor.exists():
            crd = crd_request(tree, anchor)
            path = "/cds-services/" + order_sign_id()
            http.warm(base, path, [crd])
            result["crd"] = http.wrk(base, path, [crd], seconds, connections=2, rate=100)
            renewed = json.loads(variant(crd, "new orders", RENEW))
            result["crd_new_orders"] = http.wrk(base, path, [renewed], seconds, connections=2, rate=100, renew=RENEW)
    return result


#: What ``--quick`` sets: the smallest tree everywhere, few rounds, short HTTP runs.
QUICK = {"sizes": [100], "rounds": 2, "mix": 40, "peers_size": 100, "http_size": 100, "http_seconds": 2}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The benchmark's options; ``--quick`` replaces the sizes, counts and durations by :data:`QUICK`."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 10_000, 100_000],
                        help="rule counts of the generated trees")
    parser.add_argument("--rounds", type=int, default=20, help="passes over the request mix per figure")
    parser.add_argument("--mix", type=int, default=200, help="requests in the fixed mix")
    parser.add_argument("--peers-size", type=int, default=10_000, help="tree size for the peer comparison")
    parser.add_argument("--http-size", type=int, default=10_000, help="tree size served for the HTTP runs")
    parser.add_argument("--http-seconds", type=int, default=10, help="duration of each HTTP run")
    parser.add_argument("--no-http", action="store_true", help="skip the HTTP runs")
    parser.add_argument("--http-only", action="store_true",
                        help="only the HTTP runs: generate the --http-size tree alone, no library figures")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: " + ", ".join(f"--{k.replace('_', '-')} {v}" for k, v in QUICK.items()))
    parser.add_argument("--anchor", type=Path, default=ANCHOR, help="CRD order-sign request to replay")
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    parser.add_argument("--markdown", type=Path, help="also write the table here")
    args = parser.parse_args(argv)
    if args.quick:
        vars(args).update(QUICK)
    return args


def main(argv: list[str] | None = None) -> int:
    """Generate the trees, measure, print the table (and write it as Markdown when asked)."""
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="covreq-bench-") as tmp:
        work = Path(tmp)
        results: dict[str, Any] = {"sizes": []}
        trees: dict[int, tuple[Tree, list[dict[str, Any]]]] = {}

        def tree_of(size: int) -> tuple[Tree, list[dict[str, Any]]]:
            if size not in trees:
                tree = generate(size, work / f"tree-{size}")
                trees[size] = (tree, request_mix(tree, args.mix))
            return trees[size]
        if not args.http_only:
            for size in args.sizes:
                tree, mix = tree_of(size)
                peers = ["zen-engine", "rule-engine"] if size == args.peers_size else []
                print(f"measuring {size} rules ...", file=sys.stderr, flush=True)
                results["sizes"].append(library_run(tree, mix, args.rounds, peers, work))
            results["condition"] = condition.measure()
        if not args.no_http and http.available():
            print("measuring HTTP ...", file=sys.stderr, flush=True)
            tree, mix = tree_of(args.http_size)
            results["http"] = http_run(tree, copy.deepcopy(mix), args.http_seconds, work, args.anchor)
    table = render(results)
    print(table)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    if args.markdown:
        args.markdown.write_text(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
