"""Reload under load: requests flow while the rule tree is swapped many times, a third of the swaps
broken; no request fails and every answer comes from exactly one complete rule set."""
from __future__ import annotations

import json
import os
import re
import shutil
import threading
import time
from pathlib import Path

from fastapi.testclient import TestClient

import engine
from service import Settings, create_app
from tests.service.admin import ADMIN, ADMIN_TOKEN

FIXTURES = Path(__file__).resolve().parent / "service" / "fixtures"
REQUEST = {"payer": "acme", "place_of_service": "22", "services": [{"code": "15823"}, {"code": "77061"}]}
TAGGED = {"acme/eyelid-surgery.yaml": "Eyelid surgery in a facility needs prior authorization",
          "acme/breast-imaging.yaml": "Acme reviews diagnostic breast tomosynthesis before it is done"}
SWAPS = 30
ASKERS = 4
MAX_REQUESTS = 3000  # per asker: a bound in case the swaps end early
MAX_SECONDS = 60


def _tree(root: Path, name: str, broken: bool = False) -> Path:
    """A copy of the fixture rules whose two reasons end with ``(name)``; ``broken`` adds a typo."""
    tree = Path(shutil.copytree(FIXTURES / "rules", root / name))
    for file, reason in TAGGED.items():
        path = tree / file
        path.write_text(path.read_text().replace(reason + ".", f"{reason} ({name})."))
    if broken:
        eyelid = tree / "acme/eyelid-surgery.yaml"
        eyelid.write_text(re.sub(r"place_of_service\b", "place_of_sevice", eyelid.read_text(), count=1))
    return tree


def _point(link: Path, target: Path) -> None:
    """Swap the ``current`` symlink to ``target`` atomically, as a deployment would."""
    fresh = link.with_name(link.name + ".new")
    fresh.unlink(missing_ok=True)
    fresh.symlink_to(target, target_is_directory=True)
    os.replace(fresh, link)


def test_answers_come_from_one_complete_rule_set_while_a_third_of_many_swaps_are_broken(tmp_path: Path) -> None:
    trees = [_tree(tmp_path, "va"), _tree(tmp_path, "vb"), _tree(tmp_path, "vbroken", broken=True)]
    versions = {engine.load(tree).digest: tree.name for tree in trees[:2]}
    assert len(versions) == 2
    current = tmp_path / "current"
    _point(current, trees[0])
    audit = tmp_path / "audit.jsonl"
    client = TestClient(create_app(str(current), Settings(payers=FIXTURES / "payers.yaml", audit_path=audit,
                                                                admin_token=ADMIN_TOKEN)))

    failures: list[str] = []
    seen: dict[str, int] = {}
    answered_during_swaps = [0]
    flowing, swapping, done = threading.Event(), threading.Event(), threading.Event()
    refused: list[str] = []
    lock = threading.Lock()

    def ask() -> None:
        deadline = time.monotonic() + MAX_SECONDS
        for _ in range(MAX_REQUESTS):
            if done.is_set() or time.monotonic() > deadline:
                return
            response = client.post("/v1/requirements", json=REQUEST)
            flowing.set()
            body = response.json()
            digest = body.get("ruleset")
            version = versions.get(digest)
            reasons = [d["reasons"][0] for d in body.get("decisions", [])]
            with lock:
                seen[digest] = seen.get(digest, 0) + 1
                answered_during_swaps[0] += swapping.is_set() and not done.is_set()
                if response.status_code != 200:
                    failures.append(f"status {response.status_code}: {response.text[:200]}")
                elif version is None or response.headers["x-covreq-ruleset"] != digest:
                    failures.append(f"answer from an unknown rule set {digest}")
                elif reasons != [f"{reason} ({version})." for reason in TAGGED.values()]:
                    failures.append(f"{digest} ({version}) answered {reasons}")

    def swap() -> None:
        flowing.wait(timeout=MAX_SECONDS)
        swapping.set()
        for turn in range(1, SWAPS + 1):
            tree = trees[turn % 3]  # vb, vbroken, va, vb, vbroken, ...
            before = client.get("/v1/ruleset").json()["ruleset"]
            _point(current, tree)
            response = client.post("/admin/reload", headers=ADMIN)
            body = response.json()
            if tree.name == "vbroken":
                refused.append(body["ruleset"])
                if response.status_code != 422 or body["ruleset"] != before:
                    failures.append(f"broken swap {turn}: {response.status_code}, {body['ruleset']} != {before}")
            elif response.status_code != 200 or versions.get(body["ruleset"]) != tree.name:
                failures.append(f"swap {turn} to {tree.name}: {response.status_code} {body}")
            time.sleep(0.002)
        done.set()

    threads = [threading.Thread(target=ask) for _ in range(ASKERS)] + [threading.Thread(target=swap)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=MAX_SECONDS * 2)
    assert not any(thread.is_alive() for thread in threads)

    assert failures == []
    assert len(refused) == SWAPS // 3
    assert set(seen) == set(versions), "both complete rule sets answered, and nothing else did"
    assert answered_during_swaps[0] >= SWAPS, "requests kept flowing while the tree was being swapped"
    records = [json.loads(line) for line in audit.read_text().splitlines()]
    assert len(records) == sum(seen.values()) and {r["ruleset"] for r in records} == set(versions)
    assert client.get("/readyz").json()["status"] == "ready"  # the last swap (30 % 3 == 0) was good
