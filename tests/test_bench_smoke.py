"""Smoke test of the benchmark suite: the generator and the harness at the smallest size, tiny counts.

It checks that results are well formed, never how fast anything is.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import engine
from bench import library
from bench.__main__ import crd_request, library_run, main, parse_args
from bench.generate import UNLISTED, generate, request_mix
from bench.report import render


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    return generate(100, tmp_path_factory.mktemp("tree"))


def test_the_generated_tree_loads_and_the_mix_hits_misses_and_leaves_facts_unknown(tree) -> None:  # type: ignore[no-untyped-def]
    rules = engine.load(tree.root)
    assert tree.rules >= 100 and rules.rule_count() >= tree.rules
    mix = request_mix(tree, 40)
    assert {m["kind"] for m in mix} == {"hit", "miss", "multi", "unknown", "plan"}
    answers = [d for m in mix for d in rules.evaluate(m["body"])["decisions"]]
    assert {d["pa_needed"] for d in answers} >= {"auth-needed", "no-auth"}
    assert any(d["code"] in UNLISTED for d in answers)
    assert any(d["info_needed"] for d in answers)


def test_the_library_harness_reports_every_figure_and_the_peers_agree(tree, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    for peer in ("zen", "rule_engine"):  # README's test command installs them (the bench extra)
        pytest.importorskip(peer, reason=f"{peer} is missing: install the bench extra (pip install -e '.[bench]')")
    result = library_run(tree, request_mix(tree, 20), 1, ["zen-engine", "rule-engine"], tmp_path)
    assert result["load_s"] > 0 and result["rss_mb"] > 0
    for key in ("plain", "plain_cold", "one_line_cold", "order_cold", "explain", "full_fact_covreq",
                "full_fact_covreq_rules"):
        assert result[key]["lines"] > 0 and 0 < result[key]["median_us"] <= result[key]["p99_us"]
    assert {name: p["disagreements"] for name, p in result["peers"].items()} == {"zen-engine": 0, "rule-engine": 0}
    table = render({"sizes": [result]})
    assert "| 1" in table and "zen-engine" in table and "| target |" in table


def test_the_crd_request_keeps_the_anchor_shape_with_listed_codes(tree, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    anchor = tmp_path / "crd.json"
    anchor.write_text(json.dumps({"hook": "order-sign", "prefetch": {"coverage": {}}, "context": {"draftOrders": {
        "entry": [{"resource": {"code": {"coding": [{"system": "http://www.ama-assn.org/go/cpt", "code": "77061"}]}}}]}}}))
    body = crd_request(tree, anchor)
    code = body["context"]["draftOrders"]["entry"][0]["resource"]["code"]["coding"][0]["code"]
    assert code in {x.code for x in tree.listings} and "prefetch" in body


def test_long_orders_have_200_lines_of_one_payer_with_every_fact(tree) -> None:  # type: ignore[no-untyped-def]
    orders = library.long_orders(request_mix(tree, 40))
    assert orders and all(len(o["services"]) == 200 and "place_of_service" in o for o in orders)


def test_the_condition_micro_benchmark_times_two_versions_that_agree() -> None:
    from bench import condition
    result = condition.measure(rounds=3)
    assert result["compiled_ns"] > 0 and result["hand_ns"] > 0
    assert [condition.by_hand(c) for c in condition.contexts()] == [True, False, None, False, None]


def test_the_report_shows_the_answer_cache_apart_from_the_targets() -> None:
    from bench.report import FIGURES, TARGETS
    assert all("answer cache" not in label for label, *_ in TARGETS)
    assert all(label.startswith("with the answer cache") for label, _ in FIGURES)


def test_percentiles_use_the_nearest_rank() -> None:
    assert library.percentile([float(n) for n in range(1, 101)], 0.99) == 100.0
    assert library.summary([1.0, 2.0, 3.0])["median_us"] == 2.0


def test_the_crd_scale_harness_reports_a_refusal_and_an_answer_per_size() -> None:
    from bench import crd_scale
    (result,) = crd_scale.run([25], rounds=1)  # 25 Coverages: over the default limit of 20
    assert result["default_limits"]["status"] == [413] and result["raised_limits"]["status"] == [200]
    assert result["ms_per_order"] > 0


def test_quick_is_an_option_and_every_option_the_help_mentions_exists(capsys: pytest.CaptureFixture[str]) -> None:
    """Regression (issue 15, item 10): `python -m bench --help` mentioned a `--quick` that did not exist."""
    args = parse_args(["--quick", "--no-http"])
    assert (args.sizes, args.rounds, args.http_seconds, args.no_http) == ([100], 2, 2, True)
    assert parse_args([]).sizes == [100, 1000, 10_000, 100_000]
    with pytest.raises(SystemExit):
        parse_args(["--help"])
    help_text = capsys.readouterr().out
    options = set(re.findall(r"--[a-z][a-z-]+", help_text))
    assert "--quick" in options
    for option in options - {"--help"}:
        parse_args([option, "1"] if option in ("--sizes", "--rounds", "--mix", "--peers-size", "--http-size",
                                                "--http-seconds", "--anchor", "--json", "--markdown")
                   else [option])


def test_http_only_generates_the_served_tree_alone_and_measures_no_library_figure(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    assert main(["--http-only", "--no-http", "--http-size", "100", "--sizes", "1000", "--json", str(out)]) == 0
    results = json.loads(out.read_text())
    assert results["sizes"] == [] and "condition" not in results and "http" not in results


def test_the_crd_call_harness_times_each_kind_of_traffic_and_renews_what_it_says() -> None:
    from bench import crd_call
    body = json.loads(crd_call.ANCHOR.read_text())
    same, orders, searches, everything = (json.loads(crd_call.variant(body, kind, "v7")) for kind in crd_call.KINDS)
    assert same["prefetch"] == body["prefetch"] and same["context"] == body["context"]
    assert orders["prefetch"] == body["prefetch"] and orders["context"] != body["context"]
    assert searches["context"] == orders["context"] and searches["prefetch"]["coverage"]["id"] == "v7"
    assert searches["prefetch"]["coverage"]["entry"] == body["prefetch"]["coverage"]["entry"]
    assert everything["prefetch"]["patient"]["meta"]["versionId"] == "v7"
    results = crd_call.run(calls=3, size=100)
    assert list(results) == list(crd_call.KINDS)
    assert all(0 < r["median_ms"] <= r["p99_ms"] for r in results.values())


def test_regression_the_http_rows_ran_only_when_their_tree_was_among_the_sizes(monkeypatch) -> None:
    """`--sizes 100 --http-size 10000` skipped the HTTP rows without a word; the served tree is now generated."""
    import bench.__main__ as cli
    served: list[int] = []
    monkeypatch.setattr(cli.http, "available", lambda: True)
    monkeypatch.setattr(cli, "http_run", lambda tree, *rest: served.append(tree.rules) or {"rules": tree.rules})
    monkeypatch.setattr(cli, "library_run", lambda tree, *rest: pytest.fail("--http-only measured the library"))
    monkeypatch.setattr(cli, "render", lambda results: "")
    assert main(["--http-only", "--http-size", "100"]) == 0 and served and served[0] >= 100
    monkeypatch.setattr(cli, "library_run", lambda tree, *rest: {"rules": tree.rules})
    monkeypatch.setattr(cli.condition, "measure", lambda: {"compiled_ns": 1, "hand_ns": 1, "ratio": 1.0})
    served.clear()
    assert main(["--sizes", "100", "--http-size", "200"]) == 0 and served and served[0] >= 200


def test_the_pas_benchmark_sends_a_new_submission_each_time_every_one_a_pas_request() -> None:
    from bench.pas_submit import ITEMS, PAYLOAD, submission
    from service.crd.payers import PayerMap
    from service.pas.request import read_request
    from service.pas.store import submission_key
    template = json.loads(PAYLOAD.read_text(encoding="utf-8"))
    payers = PayerMap.load(Path(__file__).resolve().parent.parent / "service" / "payers.yaml")
    read = [read_request(submission(template, n), payers) for n in range(8)]
    assert len({submission_key(r) for r in read}) == 8
    assert {(r.items[0].code, r.items[0].place_of_service) for r in read} == {(c, p) for _, c, p in ITEMS}
    assert all(r.payer.payer == "medicare" for r in read)
    named = [[d for d in r.index.of_type("DocumentReference") if "urn:covreq:documentation" in json.dumps(d)]
             for r in read]
    assert [len(d) for d in named] == [0, 0, 0, 6, 0, 0, 0, 6]
