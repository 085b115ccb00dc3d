"""/metrics: requests by route and status, decision latency, answers, the rule set in service,
reload failures and cache lookups, for one process and summed over several workers."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from admin import ADMIN
from serving import free_port, wait_until
from tests.service.test_service_reload import EYELID, REQUEST

FIXTURE_RULES = Path(__file__).parent / "fixtures" / "rules"


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of an exposition, by name and labels."""
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(text: str, name: str, **labels: str) -> float:
    """One sample's value (0 when absent), ignoring the ``pid`` label of per-worker gauges."""
    return sum(v for (n, found), v in samples(text).items()
               if n == name and labels.items() <= dict(found).items())


def test_requests_are_counted_by_route_template_and_status(client) -> None:
    client.post("/v1/requirements", json=REQUEST)
    client.post("/v1/requirements", content=b"{not json")
    client.get("/v1/policies/no-such-policy")
    client.get("/v1/policies/another-missing-one")
    client.get("/no/such/path")
    text = client.get("/metrics").text
    assert value(text, "covreq_http_requests_total", route="/v1/requirements", status="200") == 1
    assert value(text, "covreq_http_requests_total", route="/v1/requirements", status="400") == 1
    # one series for the template, however many ids were asked for; unknown paths add no series
    assert value(text, "covreq_http_requests_total", route="/v1/policies/{policy_id}", status="404") == 2
    assert value(text, "covreq_http_requests_total", route="unmatched", status="404") == 1
    assert not [n for n, labels in samples(text) if ("route", "/no/such/path") in labels]


def test_decisions_are_timed_and_answers_counted_by_pa_needed(client) -> None:
    for _ in range(3):
        assert client.post("/v1/requirements", json=REQUEST).status_code == 200
    client.get("/v1/ruleset")
    text = client.get("/metrics").text
    assert value(text, "covreq_decision_duration_seconds_count", route="/v1/requirements") == 3
    assert value(text, "covreq_decision_duration_seconds_sum", route="/v1/requirements") > 0
    assert value(text, "covreq_decision_duration_seconds_count", route="/v1/ruleset") == 0
    decisions = [d["pa_needed"] for d in client.post("/v1/requirements", json=REQUEST).json()["decisions"]]
    text = client.get("/metrics").text
    for pa_needed in set(decisions):
        assert value(text, "covreq_answers_total", api="v1", pa_needed=pa_needed) == 4 * decisions.count(pa_needed)


def test_cache_lookups_show_a_repeated_request_answered_from_the_cache(client) -> None:
    client.post("/v1/requirements", json=REQUEST)
    text = client.get("/metrics").text
    assert value(text, "covreq_cache_lookups_total", cache="answers", result="miss") == 1
    assert value(text, "covreq_cache_lookups_total", cache="answers", result="hit") == 0
    assert value(text, "covreq_cache_lookups_total", cache="selections", result="miss") == len(REQUEST["services"])
    for _ in range(4):
        client.post("/v1/requirements", json=REQUEST)
    text = client.get("/metrics").text
    assert value(text, "covreq_cache_lookups_total", cache="answers", result="hit") == 4
    assert value(text, "covreq_cache_lookups_total", cache="answers", result="miss") == 1


def test_the_rule_set_in_service_and_refused_reloads_are_reported(rules_dir: Path, make_client) -> None:
    client = make_client(rules_dir)
    first = client.get("/v1/ruleset").json()["ruleset"]
    text = client.get("/metrics").text
    assert value(text, "covreq_ruleset_info", digest=first) == 1
    assert value(text, "covreq_ruleset_policies") == client.get("/v1/ruleset").json()["policies"]
    assert value(text, "covreq_ruleset_load_duration_seconds") > 0
    assert value(text, "covreq_ruleset_loaded_timestamp_seconds") > 1.7e9
    assert value(text, "covreq_reload_failures_total", source="tree") == 0
    (rules_dir / EYELID).write_text((rules_dir / EYELID).read_text() + "\n# changed\n")
    second = client.post("/admin/reload", headers=ADMIN).json()["ruleset"]
    (rules_dir / EYELID).write_text("id: [broken\n")
    assert client.post("/admin/reload", headers=ADMIN).status_code == 422
    text = client.get("/metrics").text
    assert (value(text, "covreq_ruleset_info", digest=first), value(text, "covreq_ruleset_info", digest=second)) == (0, 1)
    assert value(text, "covreq_reload_failures_total", source="tree") == 1


def test_several_workers_report_one_sum_and_each_worker_its_rule_set(tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    code = f"from service.server import run; run({str(FIXTURE_RULES)!r}, '127.0.0.1', {port}, 2)"
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    env["COVREQ_AUDIT"] = str(tmp_path / "audit.jsonl")
    env["TMPDIR"] = str(tmp_path / "tmp")  # where the workers' metrics folder is made
    (tmp_path / "tmp").mkdir()
    with open(tmp_path / "server.log", "w") as log_file:
        server = subprocess.Popen([sys.executable, "-c", code], stdout=log_file, stderr=log_file, env=env)
    try:
        digest = wait_until(lambda: httpx.get(f"{base}/readyz").json()["ruleset"])
        for _ in range(20):  # new connections spread over both workers
            answer = httpx.post(f"{base}/v1/requirements", json=REQUEST, headers={"Connection": "close"})
            assert answer.status_code == 200
        text = wait_until(lambda: (t := httpx.get(f"{base}/metrics", headers={"Connection": "close"}).text)
                     and len({dict(labels)["pid"] for n, labels in samples(t) if n == "covreq_ruleset_info"}) == 2
                     and t)
        assert value(text, "covreq_http_requests_total", route="/v1/requirements", status="200") == 20
        assert value(text, "covreq_decision_duration_seconds_count", route="/v1/requirements") == 20
        pids = {dict(labels)["pid"] for (n, labels), v in samples(text).items()
                if n == "covreq_ruleset_info" and dict(labels)["digest"] == digest and v == 1}
        assert len(pids) == 2
        assert len(list((tmp_path / "tmp").glob("covreq-metrics-*/*.db"))) >= 2
    finally:
        server.terminate()
        server.wait(timeout=20)
    assert not list((tmp_path / "tmp").glob("covreq-metrics-*"))  # removed when the service stops


def test_cds_hooks_answers_are_counted_and_timed(client, ig_order_sign) -> None:
    response = client.post("/cds-services/order-sign-crd", json=ig_order_sign())
    assert response.status_code == 200
    audit_decisions = [d for line in client.app.state.audit.path.read_text().splitlines()  # type: ignore[attr-defined]
                       for d in json.loads(line).get("decisions", [])]
    text = client.get("/metrics").text
    assert value(text, "covreq_decision_duration_seconds_count", route="/cds-services/{service_id}") == 1
    counted = sum(v for (n, labels), v in samples(text).items() if n == "covreq_answers_total"
                  and dict(labels)["api"] == "cds-hooks")
    assert counted == len(audit_decisions) > 0


def test_no_request_adds_a_series_with_a_label_value_outside_a_closed_set(make_client, tmp_path: Path) -> None:
    """Regression (issue 24, item 3): the method was a label as sent, counted before authentication,
    so 20,000 invented methods made 20,000 series. Methods outside HTTP's own are ``other``, routes
    are templates, statuses come from a closed set; callers refused by authentication add nothing new."""
    keys = tmp_path / "keys.yaml"
    keys.write_text("billing-office: sha256:" + "0" * 64 + "\n")
    client = make_client(api_keys=keys)
    client.get("/v1/ruleset")  # the series of one refused caller, made before the flood
    client.request("BREW", "/v1/ruleset")

    def series() -> set[frozenset[tuple[str, str]]]:
        return {labels for n, labels in samples(client.get("/metrics").text) if n == "covreq_http_requests_total"}
    before = series()
    for n in range(300):
        client.request(f"M{n}{'X' * (n % 7) * 1000}", f"/v1/policies/p{n}")
        client.request(f"Q{n}", "/v1/ruleset")
        client.get(f"/no/such/path/{n}")
        client.get("/v1/ruleset")
    after = series()
    assert {dict(labels)["method"] for labels in after} <= {"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS",
                                                            "PATCH", "TRACE", "CONNECT", "other"}
    assert len(after) - len(before) <= 4  # the unmatched path and the invented methods, once each
    assert {dict(labels)["status"] for labels in after} <= {"200", "401", "404", "405"}


def test_metrics_need_the_metrics_token_once_one_is_set(make_client) -> None:
    """Issue 22, item 9: /metrics can be closed (COVREQ_METRICS_TOKEN), as Prometheus' bearer credentials expect."""
    client = make_client(metrics_token="scrape-7c1e4b2a9d")
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "scrape-7c1e4b2a9d"}):
        refused = client.get("/metrics", headers=headers)
        assert refused.status_code == 401 and "covreq_" not in refused.text
        assert refused.headers["www-authenticate"].startswith("Bearer")
        assert "COVREQ_METRICS_TOKEN" in refused.json()["error"]["message"]
    allowed = client.get("/metrics", headers={"Authorization": "Bearer scrape-7c1e4b2a9d"})
    assert allowed.status_code == 200 and "covreq_http_requests_total" in allowed.text


PROCESS_GAUGES = ("process_resident_memory_bytes", "process_virtual_memory_bytes", "process_open_fds",
                  "process_max_fds", "process_start_time_seconds", "python_info")


def test_one_process_reports_its_process_and_python_series(client) -> None:
    """Issue 26, item 2: prometheus-client's process, GC and platform collectors, as it names them."""
    client.get("/v1/ruleset")
    text = client.get("/metrics").text
    for name in PROCESS_GAUGES + ("process_cpu_seconds_total", "python_gc_collections_total"):
        assert value(text, name) > 0, name
    assert value(text, "python_info", major=str(sys.version_info.major)) == 1
    assert not [labels for n, labels in samples(text) if n.startswith(("process_", "python_")) and ("pid", os.getpid())
                in labels]


def test_several_workers_report_each_worker_process_and_forget_a_killed_one(tmp_path: Path) -> None:
    """Issue 26, item 2: with two workers every live worker's memory, descriptors and start time
    carry its pid, CPU and GC counters are summed, and a worker killed with SIGKILL (no chance to
    clean up) drops out of the pid label at the next scrape once its replacement runs."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    code = f"from service.server import run; run({str(FIXTURE_RULES)!r}, '127.0.0.1', {port}, 2)"
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    env["COVREQ_AUDIT"] = str(tmp_path / "audit.jsonl")
    with open(tmp_path / "server.log", "w") as log_file:
        server = subprocess.Popen([sys.executable, "-c", code], stdout=log_file, stderr=log_file, env=env)

    def scrape() -> str:
        return httpx.get(f"{base}/metrics", headers={"Connection": "close"}).text

    def worker_pids(text: str, name: str = "process_resident_memory_bytes") -> set[str]:
        return {dict(labels)["pid"] for n, labels in samples(text) if n == name}

    try:
        text = wait_until(lambda: (t := scrape()) and len(worker_pids(t)) == 2 and t)
        pids = worker_pids(text)
        for name in PROCESS_GAUGES:
            assert worker_pids(text, name) == pids, name
        assert str(server.pid) not in pids  # the supervisor is no worker
        for pid in pids:
            assert value(text, "process_resident_memory_bytes", pid=pid) > 10_000_000
            assert value(text, "process_start_time_seconds", pid=pid) > 1.7e9
        cpu = [labels for n, labels in samples(text) if n == "process_cpu_seconds_total"]
        assert cpu == [frozenset()] and value(text, "process_cpu_seconds_total") > 0  # one sum, no pid
        assert value(text, "python_gc_collections_total", generation="0") > 0
        killed = sorted(pids)[0]
        os.kill(int(killed), signal.SIGKILL)
        text = wait_until(lambda: (t := scrape()) and len(worker_pids(t)) == 2 and killed not in worker_pids(t)
                          and t)  # uvicorn starts a new worker, which loads the rules first
        assert killed not in {dict(labels).get("pid") for labels in (l for _, l in samples(text))}
    finally:
        server.terminate()
        server.wait(timeout=20)
