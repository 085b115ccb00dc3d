"""Render benchmark results as Markdown tables, with each target marked met or missed."""
from __future__ import annotations

from typing import Any

#: (description, value getter, limit, True when higher is better).
TARGETS = [
    ("decision median per line, no explain, largest tree (us)", lambda r: _largest(r)["plain"]["median_us"], 10, False),
    ("growth of that median, largest vs smallest tree (x)", lambda r: _growth(r), 1.5, False),
    ("same, every answer computed afresh (us)", lambda r: _largest(r)["plain_cold"]["median_us"], 10, False),
    ("speed vs zen-engine (x faster)", lambda r: _ratio(r, "zen-engine"), 5, True),
    ("speed vs rule-engine (x faster)", lambda r: _ratio(r, "rule-engine"), 30, True),
    ("speed vs zen-engine, every answer computed (x faster)", lambda r: _ratio(r, "zen-engine", "_cold"), 5, True),
    ("speed vs rule-engine, every answer computed (x faster)", lambda r: _ratio(r, "rule-engine", "_cold"), 30, True),
    ("speed vs zen-engine, rules only, as the peers (x faster)", lambda r: _ratio(r, "zen-engine", "_rules"), 5, True),
    ("speed vs rule-engine, rules only, as the peers (x faster)", lambda r: _ratio(r, "rule-engine", "_rules"), 30, True),
    ("/v1/requirements throughput, 2 workers (req/s)", lambda r: r["http"]["max"]["rps"], 1500, True),
    ("/v1/requirements p99 at ~300 req/s (ms)", lambda r: r["http"]["paced"]["p99_us"] / 1000, 20, False),
    ("CRD order-sign p99 (ms)", lambda r: r["http"]["crd"]["p99_us"] / 1000, 50, False),
    ("load + validate, 10,000-rule tree (s)", lambda r: _size(r, 10_000)["load_s"], 5, False),
    ("RSS after loading 100,000 rules (MB)", lambda r: _size(r, 100_000)["rss_mb"], 500, False),
]


def _largest(results: dict[str, Any]) -> dict[str, Any]:
    return max(results["sizes"], key=lambda s: s["rules"])


def _size(results: dict[str, Any], rules: int) -> dict[str, Any]:
    return next(s for s in results["sizes"] if abs(s["rules"] - rules) < rules * 0.01 + 10)


def _growth(results: dict[str, Any]) -> float:
    smallest = min(results["sizes"], key=lambda s: s["rules"])
    return float(_largest(results)["plain"]["median_us"] / smallest["plain"]["median_us"])


def _ratio(results: dict[str, Any], peer: str, variant: str = "") -> float:
    sized = next(s for s in results["sizes"] if "peers" in s)
    return float(sized["peers"][peer]["median_us"] / sized["full_fact_covreq" + variant]["median_us"])


def _rate(info: dict[str, Any]) -> str:
    return f"{info['hits'] / max(1, info['hits'] + info['misses']):.0%}"


def _fmt(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.2f}" if value < 10 else f"{value:.1f}"


def render(results: dict[str, Any]) -> str:
    """The library, peer, HTTP and target tables."""
    out = ["| rules | files | policy versions | load + validate s | RSS MB | decision median us | p99 us "
           "| computed median us | computed p99 us | explain median us | explain p99 us | answer cache hits "
           "| selection cache hits | parse cache hits |",
           "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for s in results["sizes"]:
        out.append(f"| {s['rules']:,} | {s['files']:,} | {s['policy_versions']:,} | {_fmt(s['load_s'])} "
                   f"| {_fmt(s['rss_mb'])} | {_fmt(s['plain']['median_us'])} | {_fmt(s['plain']['p99_us'])} "
                   f"| {_fmt(s['plain_cold']['median_us'])} | {_fmt(s['plain_cold']['p99_us'])} "
                   f"| {_fmt(s['explain']['median_us'])} | {_fmt(s['explain']['p99_us'])} "
                   f"| {_rate(s['answer_cache'])} | {_rate(s['select_cache'])} | {s['parse_cache']['hit_rate']:.0%} |")
    peered = [s for s in results["sizes"] if "peers" in s]
    if peered:
        s = peered[0]
        own, cold, bare = s["full_fact_covreq"], s["full_fact_covreq_cold"], s["full_fact_covreq_rules"]
        out += ["", f"Peers on the {s['rules']:,}-rule tree, lines with every fact given (covreq per line: median "
                    f"{_fmt(own['median_us'])} us with answers remembered, {_fmt(cold['median_us'])} us with every "
                    f"answer computed from the raw request, {_fmt(bare['median_us'])} us for the rules alone, as the "
                    f"peers are timed):", "",
                "| peer | median us/line | p99 us/line | covreq is x faster | x faster, every answer computed "
                "| x faster, rules only | compile s | distinct conditions | disagreements |",
                "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for name, p in s["peers"].items():
            out.append(f"| {name} | {_fmt(p['median_us'])} | {_fmt(p['p99_us'])} | {p['median_us'] / own['median_us']:.2f} "
                       f"| {p['median_us'] / cold['median_us']:.2f} | {p['median_us'] / bare['median_us']:.2f} "
                       f"| {_fmt(p['compile_s'])} | {p['conditions']:,} | {p['disagreements']} |")
    if "http" in results:
        h = results["http"]
        out += ["", f"HTTP, `covreq serve --workers 2`, {h['rules']:,}-rule tree, wrk on 127.0.0.1:", "",
                "| run | req/s | p50 ms | p99 ms | max ms | errors |", "|---|---:|---:|---:|---:|---:|"]
        for label, key in (("/v1/requirements, flat out (32 connections)", "max"),
                           ("/v1/requirements, paced to ~300 req/s", "paced"), ("CRD order-sign, paced to ~50 req/s", "crd")):
            if key in h:
                r = h[key]
                out.append(f"| {label} | {_fmt(r['rps'])} | {r['p50_us'] / 1000:.2f} | {r['p99_us'] / 1000:.2f} "
                           f"| {r['max_us'] / 1000:.2f} | {r['errors']} |")
    out += ["", "| target | limit | measured | |", "|---|---:|---:|---|"]
    for label, getter, limit, higher in TARGETS:
        try:
            value = getter(results)
        except (KeyError, StopIteration, ValueError):
            continue
        met = value >= limit if higher else value <= limit
        out.append(f"| {label} | {'>=' if higher else '<='} {limit:,} | {_fmt(value)} | {'met' if met else 'MISSED'} |")
    return "\n".join(out)
