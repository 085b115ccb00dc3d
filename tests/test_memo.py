"""Answers to repeated requests are remembered per rule set, handed out as independent copies."""
from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

import engine
from engine.evaluation.memo import MAX_KEY_BYTES, AnswerCache, fingerprint

GOOD = Path(__file__).resolve().parent / "fixtures" / "good"
BODY = {"payer": "medicare", "date_of_service": "2023-03-14", "place_of_service": "22",
        "services": [{"code": "15823"}]}


@pytest.fixture()
def rules() -> engine.RuleSet:
    return engine.load(GOOD)


def remembered(rules: engine.RuleSet, body: dict[str, Any], **options: Any) -> dict[str, Any]:
    return rules.evaluate(body, remember=fingerprint(body), **options)


def test_a_repeated_request_is_answered_from_the_cache_with_the_same_answer(rules: engine.RuleSet) -> None:
    first, second = remembered(rules, BODY), remembered(rules, dict(BODY))
    assert first == second
    assert rules.answer_cache_info()["hits"] == 1 and rules.answer_cache_info()["misses"] == 1


def test_without_a_key_every_answer_is_computed_and_nothing_is_kept(rules: engine.RuleSet) -> None:
    assert rules.evaluate(BODY) == rules.evaluate(BODY)
    info = rules.answer_cache_info()
    assert (info["hits"], info["misses"], info["entries"]) == (0, 0, 0)


def test_a_key_too_long_to_keep_is_answered_afresh(rules: engine.RuleSet) -> None:
    assert rules.evaluate(BODY, remember=b"k" * (MAX_KEY_BYTES + 1)) == rules.evaluate(BODY)
    assert rules.answer_cache_info()["misses"] == 0 and rules.answer_cache_info()["entries"] == 0


def test_callers_cannot_change_each_others_answers(rules: engine.RuleSet) -> None:
    first = remembered(rules, BODY)
    first["decisions"][0]["documentation"].clear()
    assert remembered(rules, BODY)["decisions"][0]["documentation"]


def test_json_types_that_python_equates_are_kept_apart() -> None:
    assert len({fingerprint({"units": 1}), fingerprint({"units": 1.0}), fingerprint({"units": True})}) == 3


def _deep(levels: int) -> Any:
    value: Any = []
    for _ in range(levels):
        value = [value]
    return value


@pytest.mark.parametrize("value", [{"a": object()}, {"a": "x" * (MAX_KEY_BYTES + 1)}, _deep(5000)])
def test_values_that_cannot_be_fingerprinted_are_simply_not_cached(value: Any) -> None:
    assert fingerprint(value) is None


def test_an_undated_request_is_remembered_per_day(rules: engine.RuleSet) -> None:
    undated = {k: v for k, v in BODY.items() if k != "date_of_service"}
    one = remembered(rules, undated, today=dt.date(2023, 3, 14))
    two = remembered(rules, undated, today=dt.date(2019, 1, 1))
    assert one["as_of"] == "2023-03-14" and two["as_of"] == "2019-01-01"
    assert one["decisions"][0]["pa_needed"] == "auth-needed" and two["decisions"][0]["pa_needed"] == "unknown"


def test_explain_answers_are_not_kept(rules: engine.RuleSet) -> None:
    remembered(rules, {**BODY, "explain": True})
    assert rules.answer_cache_info()["entries"] == 0


def test_refused_requests_are_refused_every_time(rules: engine.RuleSet) -> None:
    for _ in range(2):
        with pytest.raises(engine.RequestError):
            remembered(rules, {"payer": "medicare", "services": [{"code": "nope"}]})
    assert rules.answer_cache_info()["entries"] == 0


def test_the_cache_holds_at_most_its_byte_budget() -> None:
    cache = AnswerCache(max_bytes=2000)
    for i in range(20):
        cache.put(f"k{i}".encode(), {"answer": i, "pad": "x" * 40})
    info = cache.info()
    assert info["bytes"] <= 2000 and info["entries"] < 20
    assert cache.get(b"k19") == {"answer": 19, "pad": "x" * 40}
    cache.put(b"huge", {"pad": "x" * 5000})
    assert cache.get(b"huge") is None


def test_the_least_recently_used_answers_go_first_when_the_budget_is_spent() -> None:
    cache = AnswerCache(max_bytes=3 * (300 + 10))
    for key in (b"a", b"b", b"c"):
        cache.put(key, "x" * 10)
    assert cache.get(b"a") == "x" * 10  # now the most recent
    cache.put(b"d", "x" * 10)
    assert cache.get(b"b") is None and cache.get(b"a") and cache.get(b"c") and cache.get(b"d")
    assert cache.info()["entries"] == 3 and cache.info()["bytes"] <= cache.info()["max_bytes"]


def test_replacing_an_answer_charges_it_once() -> None:
    cache = AnswerCache(max_bytes=10_000)
    cache.put(b"k", {"answer": 1})
    once = cache.info()["bytes"]
    cache.put(b"k", {"answer": 1})
    assert cache.info()["bytes"] == once and cache.info()["entries"] == 1
