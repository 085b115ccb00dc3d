"""A fixed corpus of requests whose recorded decisions every engine change must reproduce byte for byte.

The corpus covers a snapshot of the bundled rules (``tests/fixtures/decisions/bundled-rules``, with
every request of their test cases, again with each fact left out in turn and with an authorization
on file) and a generated tree (``bench/generate.py``, 300 rules, its seeded mix, again with
authorizations on file and orders said to be complete), each request with and without ``explain``. ``python -m bench.corpus``
records the decisions into ``tests/fixtures/decisions/recorded.jsonl.gz``;
``tests/test_decision_corpus.py`` checks the engine still gives exactly those bytes.
"""
from __future__ import annotations

import datetime as dt
import gzip
import json
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator

import engine
from engine.loading.yamlsource import load_yaml

from .generate import generate, request_mix

FIXTURE = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "decisions"
RECORDED = FIXTURE / "recorded.jsonl.gz"
#: The day every corpus request is answered on (requests without a date of service take it).
TODAY = dt.date(2025, 6, 1)
_OPTIONAL = ("plan", "date_of_service", "place_of_service", "type_of_bill", "state", "patient", "diagnoses",
             "provider")


def _variants(body: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The request, each optional fact left out in turn, one with an authorization on file and, for
    an order of several lines, one said to be complete."""
    yield body
    if len(body["services"]) > 1:
        yield {**body, "order_complete": True}
    for key in _OPTIONAL:
        if key in body:
            yield {k: v for k, v in body.items() if k != key}
    code = body["services"][0].get("code")
    start = body.get("date_of_service", TODAY.isoformat())
    yield {**body, "authorizations": [{"id": "PA-1", "code": code, "start": start}]}


def _bundled_requests(root: Path) -> Iterator[dict[str, Any]]:
    for path in sorted(root.rglob("*.tests.yaml")):
        for case in load_yaml(path.read_text(encoding="utf-8"))[0].get("cases", []):
            yield from _variants(json.loads(json.dumps(case["request"], default=str)))


def _generated_requests(tree_root: Path) -> Iterator[dict[str, Any]]:
    tree = generate(300, tree_root)
    for item in request_mix(tree, 300):
        body = item["body"]
        yield body
        if len(body["services"]) > 1:
            yield {**body, "order_complete": True}
        yield {**body, "authorizations": [{"id": "PA-2", "code": body["services"][0]["code"],
                                           "start": body["date_of_service"]}]}


def _answered(name: str, root: Path, requests: list[dict[str, Any]],
              warm: bool) -> Iterator[tuple[str, dict[str, Any], str]]:
    """Answers of the tree at ``root``, its path written ``<tree>`` (explain traces name rule files)."""
    rules = engine.load(root)
    for _ in range(2 if warm else 1):
        answered = [(request, _answer(rules, request)) for body in requests for request in (body, {**body, "explain": True})]
    for request, answer in answered:
        yield name, request, json.dumps(answer, ensure_ascii=False).replace(str(root), "<tree>")


def _answer(rules: engine.RuleSet, request: dict[str, Any]) -> Any:
    try:
        return rules.evaluate(request, TODAY)
    except engine.RequestError as exc:
        return {"error": str(exc)}


def answers(warm: bool = False) -> Iterator[tuple[str, dict[str, Any], str]]:
    """(corpus name, request, the engine's answer as JSON text) for every corpus request; when
    ``warm``, each rule set answers its whole corpus once before (so remembered decision templates
    answer every line they can)."""
    bundled = FIXTURE / "bundled-rules"
    yield from _answered("bundled", bundled, list(_bundled_requests(bundled)), warm)
    with tempfile.TemporaryDirectory(prefix="covreq-corpus-") as tmp:
        requests = list(_generated_requests(Path(tmp)))
        yield from _answered("generated", Path(tmp), requests, warm)


def record(path: Path = RECORDED) -> int:
    """Write every corpus answer to ``path``; returns how many."""
    count = 0
    with gzip.open(path, "wt", encoding="utf-8") as out:
        for name, request, answer in answers():
            out.write(json.dumps({"corpus": name, "request": request, "answer": answer}) + "\n")
            count += 1
    return count


if __name__ == "__main__":
    print(f"recorded {record()} answers into {RECORDED}", file=sys.stderr)
