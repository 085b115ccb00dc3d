"""Library measurements for one tree, run in a fresh process per size (``python -m bench.library``).

A fresh process makes load time cold and resident memory that of this tree alone. It prints one
JSON object: load time, RSS, decision latency per service line (median and p99) with and without
explain and with a cold or warm selection cache, cache hit rates and, when asked, the peers.
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import orjson

import engine
from engine.loading import compiling
from engine.evaluation.request import parse_request

from .peers import PeerScanner, full_fact_bodies


def rss_mb() -> float:
    """Current resident set size of this process, in MB (Linux /proc)."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * resource.getpagesize() / 1e6


def percentile(samples: list[float], q: float) -> float:
    """The ``q`` quantile (0-1) of ``samples``, nearest rank."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summary(samples: list[float]) -> dict[str, float]:
    """Median and p99 of per-line samples, in microseconds."""
    return {"median_us": statistics.median(samples), "p99_us": percentile(samples, 0.99), "lines": len(samples)}


def line_latencies(evaluate: Callable[[dict[str, Any]], Any], bodies: list[dict[str, Any]], rounds: int) -> list[float]:
    """Time each request; a request of n lines gives n samples of its time / n (microseconds)."""
    samples: list[float] = []
    clock = time.perf_counter_ns
    for _ in range(rounds):
        for body in bodies:
            start = clock()
            evaluate(body)
            elapsed = (clock() - start) / 1000
            lines = len(body["services"])
            samples.extend([elapsed / lines] * lines)
    return samples


def measure(tree: Path, mix: list[dict[str, Any]], rounds: int, peers: list[str]) -> dict[str, Any]:
    """Every library figure for the tree at ``tree``."""
    base_rss = rss_mb()
    start = time.perf_counter()
    rules = engine.load(tree)
    load_s = time.perf_counter() - start
    result: dict[str, Any] = {"load_s": load_s, "rss_mb": rss_mb(), "rss_rules_mb": rss_mb() - base_rss,
                              "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1000,
                              "policy_versions": len(rules), "rules_compiled": rules.rule_count(),
                              "parse_cache": _hit_rate(compiling.parsed_condition.cache_info())}
    bodies = [m["body"] for m in mix]
    explained = [{**b, "explain": True} for b in bodies]
    orders = long_orders(mix)
    full = full_fact_bodies(mix) if peers else []
    warm_up(rules.evaluate, [*bodies, *explained, *orders, *full])
    # Every figure but "plain" and "full_fact_covreq" is computed: evaluate without ``remember``
    # keeps no answer (selections and compiled policy programs stay warm, as in steady state).
    result["plain"] = summary(line_latencies(remembering(rules, bodies), bodies, rounds))
    result["select_cache"] = rules.select_cache_info()  # warm-up + plain runs
    result["answer_cache"] = rules.answer_cache_info()
    result["plain_cold"] = summary(line_latencies(rules.evaluate, bodies, max(1, rounds // 4)))
    single = [b for b in bodies if len(b["services"]) == 1]
    result["one_line_cold"] = summary(line_latencies(rules.evaluate, single, max(1, rounds // 2)))
    result["order_cold"] = summary(line_latencies(rules.evaluate, orders, max(1, rounds // 4)))
    result["explain"] = summary(line_latencies(rules.evaluate, explained, max(1, rounds // 4)))
    if peers:
        result["full_fact_covreq"] = summary(line_latencies(remembering(rules, full), full, rounds))
        result["full_fact_covreq_cold"] = summary(line_latencies(rules.evaluate, full, max(1, rounds // 4)))
        result["full_fact_covreq_rules"] = summary(line_latencies(_rules_only(rules, full), full, rounds))
        result["peers"] = {name: _peer(rules, name, full, rounds) for name in peers}
    return result


#: Passes over every request before any figure. CPython 3.11 specializes a function's bytecode only
#: after it has run 8 times, and a policy program or decision builder runs once per line it decides:
#: in steady state the ones in use have run thousands of times. First sight also compiles programs
#: and builders; none of it is part of a figure.
WARM_UP_PASSES = 10


def warm_up(evaluate: Callable[[dict[str, Any]], Any], bodies: list[dict[str, Any]]) -> None:
    """Answer every request :data:`WARM_UP_PASSES` times, untimed."""
    for _ in range(WARM_UP_PASSES):
        for body in bodies:
            evaluate(body)


def remembering(rules: engine.RuleSet, bodies: list[dict[str, Any]]) -> Callable[[dict[str, Any]], Any]:
    """``rules.evaluate`` with the answer cache, keyed as the service keys it: by the request's JSON
    bytes (made beforehand, as the service receives them)."""
    raw = {id(body): orjson.dumps(body) for body in bodies}

    def evaluate(body: dict[str, Any]) -> Any:
        return rules.evaluate(body, remember=raw[id(body)])
    return evaluate


def long_orders(mix: list[dict[str, Any]], lines: int = 200, count: int = 5) -> list[dict[str, Any]]:
    """Orders of ``lines`` service lines: a full-fact request of the mix whose lines are the codes its
    payer's requests in the mix ask about, in turn (hits, misses and plan overrides alike)."""
    full = [m["body"] for m in mix if m["kind"] in ("hit", "multi", "plan")]
    orders = []
    for body in full[:count]:
        services = [s for b in full if b["payer"] == body["payer"] for s in b["services"]]
        orders.append({**body, "services": [services[i % len(services)] for i in range(lines)]})
    return orders


def _rules_only(rules: engine.RuleSet, bodies: list[dict[str, Any]]) -> Callable[[dict[str, Any]], Any]:
    """covreq doing what the peers do: requests parsed beforehand, then per line the selection of
    policies, their rules, combination and authorizations, written as the v1 decision."""
    parsed = {id(body): parse_request(body) for body in bodies}

    def decide(body: dict[str, Any]) -> list[dict[str, Any]]:
        return rules.decide(parsed[id(body)])
    return decide


def _hit_rate(info: Any) -> dict[str, float]:
    total = info.hits + info.misses
    return {"hits": info.hits, "misses": info.misses, "hit_rate": info.hits / total if total else 0.0}


def _peer(rules: engine.RuleSet, name: str, bodies: list[dict[str, Any]], rounds: int) -> dict[str, Any]:
    """Compile the rule set for a peer, check it agrees with covreq, then time it."""
    start = time.perf_counter()
    scanner = PeerScanner(rules, name)
    compile_s = time.perf_counter() - start
    expected = [[d["pa_needed"] for d in rules.evaluate(b)["decisions"]] for b in bodies]
    disagree = sum(scanner.answer(b) != want for b, want in zip(bodies, expected))
    warm_up(scanner.answer, bodies)  # as covreq is warmed
    stats = summary(line_latencies(scanner.answer, bodies, max(1, rounds // 2)))
    return {**stats, "compile_s": compile_s, "conditions": scanner.conditions, "disagreements": disagree}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the per-size child process: reads the mix from a JSON file."""
    parser = argparse.ArgumentParser(prog="python -m bench.library")
    parser.add_argument("tree", type=Path)
    parser.add_argument("mix", type=Path)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--peers", nargs="*", default=[])
    args = parser.parse_args(argv)
    mix = json.loads(args.mix.read_text())
    json.dump(measure(args.tree, mix, args.rounds, args.peers), sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
