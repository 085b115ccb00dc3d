"""Render benchmark results as Markdown tables, with each target marked met or missed."""
from __future__ import annotations

from typing import Any

#: (description, value getter, limit, True when higher is better). No answer cache in any of them.
TARGETS = [
    ("new one-line request, every answer computed, largest tree (us)",
     lambda r: _largest(r)["one_line_cold"]["median_us"], 12, False),
    ("per line of 200-line orders, every answer computed, largest tree (us)",
     lambda r: _largest(r)["order_cold"]["median_us"], 6, False),
    ("growth of the one-line median, largest vs smallest tree (x)", lambda r: _growth(r), 1.5, False),
    ("speed vs zen-engine, every answer computed (x faster)", lambda r: _ratio(r, "zen-engine", "_cold"), 2, True),
    ("speed vs rule-engine, every answer computed (x faster)", lambda r: _ratio(r, "rule-engine", "_cold"), 30, True),
    ("speed vs zen-engine, rules only, as the peers (x faster)", lambda r: _ratio(r, "zen-engine", "_rules"), 5, True),
    ("speed vs rule-engine, rules only, as the peers (x faster)", lambda r: _ratio(r, "rule-engine", "_rules"), 50, True),
    ("one compiled condition vs the same by hand in Python (x the time)", lambda r: r["condition"]["ratio"], 2, False),
    ("/v1/requirements, distinct requests, 2 workers (req/s)", lambda r: r["http"]["max"]["rps"], 2500, True),
    ("/v1/requirements, distinct requests, p99 at ~300 req/s (ms)", lambda r: r["http"]["paced"]["p99_us"] / 1000, 10, False),
    ("CRD order-sign p99 at ~100 req/s (ms)", lambda r: r["http"]["crd"]["p99_us"] / 1000, 10, False),
    ("CRD order-sign p99 at ~100 req/s, every call's orders new (ms)",
     lambda r: r["http"]["crd_new_orders"]["p99_us"] / 1000, 10, False),
    ("load + validate, 100,000-rule tree (s)", lambda r: _size(r, 100_000)["load_s"], 10, False),
    ("RSS after loading 100,000 rules (MB)", lambda r: _size(r, 100_000)["rss_mb"], 250, False),
]
#: Figures shown beside the targets, labelled, with no limit: what remembering answers adds.
FIGURES = [
    ("with the answer cache: decision median per line on the repeated mix, largest tree (us)",
     lambda r: _largest(r)["plain"]["median_us"]),
    ("with the answer cache: x faster than zen-engine", lambda r: _ratio(r, "zen-engine")),
    ("with the answer cache: x faster than rule-engine", lambda r: _ratio(r, "rule-engine")),
]


def _largest(results: dict[str, Any]) -> dict[str, Any]:
    return max(results["sizes"], key=lambda s: s["rules"])


def _size(results: dict[str, Any], rules: int) -> dict[str, Any]:
    return next(s for s in results["sizes"] if abs(s["rules"] - rules) < rules * 0.01 + 10)


def _growth(results: dict[str, Any]) -> float:
    smallest = min(results["sizes"], key=lambda s: s["rules"])
    return float(_largest(results)["one_line_cold"]["median_us"] / smallest["one_line_cold"]["median_us"])


def _ratio(results: dict[str, Any], peer: str, variant: str = "") -> float:
    sized = next(s for s in results["sizes"] if "peers" in s)
    return float(sized["peers"][peer]["median_us"] / sized["full_fact_covreq" + variant]["median_us"])


def _rate(info: dict[str, Any]) -> str:
    return f"{info['hits'] / max(1, info['hits'] + info['misses']):.0%}"


def _fmt(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.2f}" if value < 10 else f"{value:.1f}"


def render(results: dict[str, Any]) -> str:
    """The library, peer, HTTP and target tables."""
    out = ["| rules | files | policy versions | load + validate s | RSS MB | one-line computed median us | p99 us "
           "| 200-line order computed us/line | p99 | mix computed median us/line | p99 "
           "| explain median us | explain p99 us | with answer cache median us | answer cache hits "
           "| selection cache hits | parse cache hits |",
           "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for s in results["sizes"]:
        out.append(f"| {s['rules']:,} | {s['files']:,} | {s['policy_versions']:,} | {_fmt(s['load_s'])} "
                   f"| {_fmt(s['rss_mb'])} | {_fmt(s['one_line_cold']['median_us'])} | {_fmt(s['one_line_cold']['p99_us'])} "
                   f"| {_fmt(s['order_cold']['median_us'])} | {_fmt(s['order_cold']['p99_us'])} "
                   f"| {_fmt(s['plain_cold']['median_us'])} | {_fmt(s['plain_cold']['p99_us'])} "
                   f"| {_fmt(s['explain']['median_us'])} | {_fmt(s['explain']['p99_us'])} "
                   f"| {_fmt(s['plain']['median_us'])} | {_rate(s['answer_cache'])} | {_rate(s['select_cache'])} | {s['parse_cache']['hit_rate']:.0%} |")
    peered = [s for s in results["sizes"] if "peers" in s]
    if peered:
        s = peered[0]
        own, cold, bare = s["full_fact_covreq"], s["full_fact_covreq_cold"], s["full_fact_covreq_rules"]
        out += ["", f"Peers on the {s['rules']:,}-rule tree, lines with every fact given (covreq per line: median "
                    f"{_fmt(cold['median_us'])} us with every answer computed from the raw request, "
                    f"{_fmt(bare['median_us'])} us for the rules alone, as the peers are timed; "
                    f"{_fmt(own['median_us'])} us with the answer cache, shown apart):", "",
                "| peer | median us/line | p99 us/line | x faster, every answer computed "
                "| x faster, rules only | (x faster with the answer cache) | compile s | distinct conditions | disagreements |",
                "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for name, p in s["peers"].items():
            out.append(f"| {name} | {_fmt(p['median_us'])} | {_fmt(p['p99_us'])} | {p['median_us'] / cold['median_us']:.2f} "
                       f"| {p['median_us'] / bare['median_us']:.2f} | ({p['median_us'] / own['median_us']:.2f}) "
                       f"| {_fmt(p['compile_s'])} | {p['conditions']:,} | {p['disagreements']} |")
    if "condition" in results:
        c = results["condition"]
        out += ["", f"One compiled condition (bench/condition.py): {c['compiled_ns']:.0f} ns per call, the same "
                    f"written by hand in Python {c['hand_ns']:.0f} ns ({c['ratio']:.2f}x)."]
    if "http" in results:
        h = results["http"]
        out += ["", f"HTTP, `covreq serve --workers 2`, {h['rules']:,}-rule tree, wrk on 127.0.0.1, every "
                    f"/v1/requirements request distinct (its own request_id, so no answer is remembered):", "",
                "| run | req/s | p50 ms | p99 ms | max ms | errors |", "|---|---:|---:|---:|---:|---:|"]
        for label, key in (("/v1/requirements, flat out (32 connections)", "max"),
                           ("/v1/requirements, paced to ~300 req/s", "paced"), ("CRD order-sign, paced to ~100 req/s", "crd"),
                           ("CRD order-sign, every call's orders new, paced to ~100 req/s", "crd_new_orders")):
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
    for label, getter in FIGURES:
        try:
            out.append(f"| {label} | (figure) | {_fmt(getter(results))} | |")
        except (KeyError, StopIteration, ValueError):
            continue
    return "\n".join(out)
