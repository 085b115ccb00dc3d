"""Reload: atomic swaps under load, a broken tree refused, SIGHUP and the admin endpoint."""
from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
from admin import ADMIN
from serving import free_port, wait_until

import engine

EYELID = "acme/eyelid-surgery.yaml"
FACILITY = "Eyelid surgery in a facility needs prior authorization."
IMAGING = "Acme reviews diagnostic breast tomosynthesis before it is done."
REQUEST = {"payer": "acme", "place_of_service": "22",
           "services": [{"code": "15823"}, {"code": "77061"}]}
LOCATED = re.compile(r"eyelid-surgery\.yaml:\d+:\d+: ")


def _edit(rules: Path, version: str) -> None:
    """Rewrite two policies so that every reason names ``version``."""
    for name, text in ((EYELID, FACILITY), ("acme/breast-imaging.yaml", IMAGING)):
        path = rules / name
        current = path.read_text()
        stem = text.rstrip(".")
        current = re.sub(re.escape(stem) + r"( \(v\w+\))?\.", f"{stem} ({version}).", current)
        path.write_text(current)


def test_reload_under_load_never_fails_or_mixes_rule_sets(rules_dir: Path, make_client) -> None:
    expected: dict[str, str] = {}
    for version in ("vb", "va"):  # learn each version's digest; end on version A
        _edit(rules_dir, version)
        expected[engine.load(rules_dir).digest] = version
    app_client = make_client(rules_dir)
    failures: list[str] = []
    seen: set[str] = set()

    answering, flipped = threading.Event(), threading.Event()

    def ask() -> None:
        client = app_client  # one app, shared by every thread like a server's
        for _ in range(2000):  # bounded; normally ends soon after the last reload
            if flipped.is_set():
                break
            response = client.post("/v1/requirements", json=REQUEST)
            answering.set()
            if response.status_code != 200:
                failures.append(f"status {response.status_code}")
                continue
            body = response.json()
            digest = body["ruleset"]
            version = expected.get(digest)
            seen.add(digest)
            reasons = [d["reasons"][0] for d in body["decisions"]]
            if digest != response.headers["x-covreq-ruleset"] or version is None:
                failures.append(f"digest {digest} / header {response.headers['x-covreq-ruleset']}")
            elif reasons != [f"{FACILITY[:-1]} ({version}).", f"{IMAGING[:-1]} ({version})."]:
                failures.append(f"{digest} ({version}) answered {reasons}")

    def flip() -> None:
        answering.wait(timeout=30)
        for turn in range(12):
            _edit(rules_dir, ("vb", "va")[turn % 2])
            response = app_client.post("/admin/reload", headers=ADMIN)
            if response.status_code != 200:
                failures.append(f"reload {response.status_code}: {response.text}")
            time.sleep(0.005)
        flipped.set()

    threads = [threading.Thread(target=ask) for _ in range(4)] + [threading.Thread(target=flip)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    assert failures == []
    assert seen <= set(expected) and len(seen) == 2, "both rule sets answered during the run"


def test_a_broken_file_leaves_the_last_good_rule_set_serving(rules_dir: Path, make_client, caplog) -> None:
    client = make_client(rules_dir)
    good = client.get("/v1/ruleset").json()["ruleset"]
    path = rules_dir / EYELID
    path.write_text(path.read_text().replace('place_of_service == "11"', 'place_of_sevice == "11"'))

    with caplog.at_level(logging.ERROR, logger="covreq.reload"):
        refused = client.post("/admin/reload", headers=ADMIN)
    assert refused.status_code == 422
    body = refused.json()
    assert body["reloaded"] is False and body["ruleset"] == good
    assert body["error"]["problems"] and all(LOCATED.search(p) for p in body["error"]["problems"])
    logged = [r for r in caplog.records if getattr(r, "event", "") == "reload-failed"]
    assert logged and LOCATED.search(logged[0].problem)

    answer = client.post("/v1/requirements", json=REQUEST)
    assert answer.status_code == 200 and answer.json()["ruleset"] == good
    info = client.get("/v1/ruleset").json()
    assert info["ruleset"] == good and info["last_reload_error"]["problems"] == body["error"]["problems"]
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "degraded"
    places = [": ".join(problem.split(": ")[:2]) for problem in info["last_reload_error"]["problems"]]
    assert ready.json()["last_reload_error"]["problems"] == places  # where and which code, never the message

    path.write_text(path.read_text().replace('place_of_sevice == "11"', 'place_of_service == "12"'))
    fixed = client.post("/admin/reload", headers=ADMIN).json()
    assert fixed["reloaded"] is True and fixed["ruleset"] != good
    assert client.get("/readyz").json()["status"] == "ready"
    assert client.get("/v1/ruleset").json()["last_reload_error"] is None


def test_admin_reload_is_refused_until_a_token_is_configured(rules_dir: Path, make_client) -> None:
    """Regression (issue 22, item 9): without COVREQ_ADMIN_TOKEN anyone who reached the port could reload."""
    client = make_client(rules_dir, admin_token=None)
    before = client.get("/v1/ruleset").json()["ruleset"]
    _edit(rules_dir, "v2")
    for headers in ({}, {"Authorization": "Bearer anything"}):
        refused = client.post("/admin/reload", headers=headers)
        assert refused.status_code == 403
        assert "COVREQ_ADMIN_TOKEN" in refused.json()["error"]["message"]
    assert client.get("/v1/ruleset").json()["ruleset"] == before


def test_admin_reload_needs_the_token_when_one_is_set(make_client) -> None:
    client = make_client(admin_token="s3cret")
    assert client.post("/admin/reload", headers=ADMIN).status_code == 401
    assert client.post("/admin/reload", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert client.post("/admin/reload", headers={"Authorization": "Bearer s3cret"}).status_code == 200


def test_served_process_reloads_on_sighup_and_logs_json(rules_dir: Path, tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "server.log"
    code = f"from service.server import run; run({str(rules_dir)!r}, '127.0.0.1', {port}, 1)"
    env = {**os.environ, "COVREQ_JSON_LOGS": "1", "COVREQ_AUDIT": str(tmp_path / "audit.jsonl")}
    with open(log_path, "w") as log_file:
        server = subprocess.Popen([sys.executable, "-c", code], stdout=log_file, stderr=log_file, env=env)
    try:
        first = wait_until(lambda: httpx.get(f"{base}/v1/ruleset").json()["ruleset"])
        _edit(rules_dir, "vc")
        server.send_signal(signal.SIGHUP)
        second = wait_until(lambda: (d := httpx.get(f"{base}/v1/ruleset").json()["ruleset"]) != first and d)
        (rules_dir / EYELID).write_text("id: [broken\n")
        server.send_signal(signal.SIGHUP)
        error = wait_until(lambda: httpx.get(f"{base}/v1/ruleset").json()["last_reload_error"])
        assert error["problems"] and httpx.get(f"{base}/v1/ruleset").json()["ruleset"] == second
        assert httpx.post(f"{base}/v1/requirements", json=REQUEST).status_code == 200
    finally:
        server.terminate()
        server.wait(timeout=20)
    events = [json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")]
    kinds = {e.get("event") for e in events}
    assert {"started", "reloaded", "reload-failed", "request"} <= kinds
    requests = [e for e in events if e.get("event") == "request"]
    assert all(set(e) >= {"method", "path", "status", "ms", "ruleset"} for e in requests)


def test_several_workers_start_from_the_environment(tmp_path: Path) -> None:
    port = free_port()
    code = f"from service.server import run; run({str(Path(__file__).parent / 'fixtures' / 'rules')!r}, '127.0.0.1', {port}, 2)"
    env = {**os.environ, "COVREQ_AUDIT": str(tmp_path / "audit.jsonl")}
    with open(tmp_path / "server.log", "w") as log_file:
        server = subprocess.Popen([sys.executable, "-c", code], stdout=log_file, stderr=log_file, env=env)
    try:
        info = wait_until(lambda: httpx.get(f"http://127.0.0.1:{port}/v1/ruleset").json())
        assert info["payers"] == ["acme"]
    finally:
        server.terminate()
        server.wait(timeout=20)


def test_sighup_reloads_every_worker_in_place_and_a_broken_tree_keeps_them_serving(
        rules_dir: Path, tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    code = f"from service.server import run; run({str(rules_dir)!r}, '127.0.0.1', {port}, 2)"
    env = {**os.environ, "COVREQ_AUDIT": str(tmp_path / "audit.jsonl")}
    with open(tmp_path / "server.log", "w") as log_file:
        server = subprocess.Popen([sys.executable, "-c", code], stdout=log_file, stderr=log_file, env=env)

    def digests() -> set[str]:  # new connections spread over both workers
        return {httpx.get(f"{base}/v1/ruleset", headers={"Connection": "close"}).json()["ruleset"]
                for _ in range(12)}
    try:
        first = wait_until(lambda: len(d := digests()) == 1 and d.pop())
        _edit(rules_dir, "vw")
        server.send_signal(signal.SIGHUP)
        second = wait_until(lambda: (d := digests()) == {d2 for d2 in d if d2 != first} and len(d) == 1 and d.pop())
        (rules_dir / EYELID).write_text("id: [broken\n")
        server.send_signal(signal.SIGHUP)
        wait_until(lambda: all(httpx.get(f"{base}/v1/ruleset", headers={"Connection": "close"}).json()["last_reload_error"]
                          for _ in range(12)))
        assert digests() == {second}
        answers = [httpx.post(f"{base}/v1/requirements", json=REQUEST, headers={"Connection": "close"})
                   for _ in range(8)]
        assert all(a.status_code == 200 and a.json()["ruleset"] == second for a in answers)
        assert server.poll() is None
    finally:
        server.terminate()
        server.wait(timeout=20)


def test_a_broken_base_counts_once_in_reload_and_readiness_however_many_overrides_extend_it(
        rules_dir: Path, make_client) -> None:
    """Regression (issue 15, item 4): /admin/reload and /readyz repeated a base's problem per plan override."""
    for plan in ("acme-gold", "acme-silver", "acme-bronze"):  # plans the fixture's _payer.yaml lists
        (rules_dir / "acme" / f"eyelid-{plan}.yaml").write_text(
            f"id: acme-eyelid-{plan}\nplans: [{plan}]\nextends: acme-eyelid-surgery\n")
    client = make_client(rules_dir)
    path = rules_dir / EYELID
    path.write_text(path.read_text().replace('place_of_service == "11"', 'place_of_sevice == "11"'))
    problems = client.post("/admin/reload", headers=ADMIN).json()["error"]["problems"]
    assert len(problems) == 1 and LOCATED.search(problems[0]) and "E-unknown-fact" in problems[0]
    shown = client.get("/readyz").json()["last_reload_error"]["problems"]  # places and codes only
    assert len(shown) == 1 and problems[0].startswith(shown[0])
