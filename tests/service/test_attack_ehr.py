"""The attacker's suite, the EHR client: a hostile EHR (real HTTP on loopback, tests/service/
hostile_ehr.py) answers covreq's queries with compression bombs, content codings covreq does not
take, slow drips, endless bodies and JSON too deep to parse. Each costs a bounded amount of
memory and work; the call is answered (200) as when the EHR cannot be reached: the order whose
data the EHR failed to give is ``indeterminate``, reason ``technical`` naming the query.

Regression tests are named after the reports of issue 24 they close. Bounds on time measure the
process's CPU time and stay generous (the attacks they stop cost minutes), so that a busy machine
does not fail them.
"""
from __future__ import annotations

import asyncio
import gzip
import threading
import time
import tracemalloc
import zlib
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Iterator

import httpx
import pytest
from fastapi.testclient import TestClient
from crd_calls import by_code, order_sign, post, repetitions, service_request, value
from ehr_stub import Reply, serve
from hostile_ehr import (MIB, HostileEhr, bomb, coded, deep_json, drip, endless, nested_extensions, served_as_is,
                         stacked_bomb)
from serving import served
from test_crd_ehr_queries import coverage_of, granted

from service.ehr_client import EhrClient, EhrError, EhrLimits
from service.fhir import r4
from service.settings import Settings

FIXTURE_RULES = Path(__file__).resolve().parent / "fixtures" / "rules"
MAX_BYTES = 1_000_000  # COVREQ_EHR_MAX_BYTES in these tests
MEMORY_BOUND = 24 * MIB  # traced memory a call may add at its peak: a few times MAX_BYTES, far below a bomb
CPU_BOUND = 10.0  # seconds of the process's CPU a call may take; the bombs cost minutes


@pytest.fixture()
def hostile() -> Iterator[HostileEhr]:
    """A hostile EHR on loopback holding Acme's Coverage of p1; tricks are set by each test."""
    stub = HostileEhr()
    stub.hold(coverage_of("p1"))
    server = serve(stub)
    yield stub
    server.shutdown()
    server.server_close()


def call(ehr: HostileEhr) -> dict[str, Any]:
    """An order-sign call: order ``open`` needs the patient (Patient/p1, read from the EHR) for its
    answer, order ``settled`` needs nothing the EHR has."""
    return granted({"hook": "order-sign", "hookInstance": "attack-ehr", "context": {
        "userId": "Practitioner/u1", "patientId": "p1", "draftOrders": {
            "resourceType": "Bundle", "type": "collection", "entry": [
                {"resource": service_request("open", "15823")},
                {"resource": service_request("settled", "99213")}]}}}, ehr)


def measured(work: Callable[[], Any]) -> tuple[Any, int, float]:
    """``work()``'s result, the memory it added at its peak (tracemalloc, every thread) and the
    CPU seconds the process spent meanwhile."""
    tracemalloc.start()
    try:
        before, cpu = tracemalloc.get_traced_memory()[0], time.process_time()
        tracemalloc.reset_peak()
        result = work()
        return result, tracemalloc.get_traced_memory()[1] - before, time.process_time() - cpu
    finally:
        tracemalloc.stop()


def assert_answered_without(body: dict[str, Any], crd, why: str) -> None:
    """The open order is indeterminate for a technical reason naming GET Patient/p1 and ``why``;
    the settled one is answered as ever."""
    opened = by_code(repetitions(body, "ServiceRequest/open", crd), crd)["15823"]
    assert value(opened, "pa-needed") == ["indeterminate"]
    technical = value(opened, "reason")[0]
    assert technical["coding"][0]["code"] == "technical"
    assert "GET Patient/p1" in technical["text"] and why in technical["text"], technical["text"]
    assert value(by_code(repetitions(body, "ServiceRequest/settled", crd), crd)["99213"], "pa-needed") == ["no-auth"]


TRICKS: dict[str, tuple[Callable[[], Reply], str]] = {  # name -> the trick, and what the failure says
    "stacked gzip bomb": (lambda: stacked_bomb(256 * MIB), "stacked content codings are refused"),
    "gzip bomb": (lambda: bomb(256 * MIB), f"larger than {MAX_BYTES} bytes"),
    "deflate bomb": (lambda: bomb(256 * MIB, "deflate"), f"larger than {MAX_BYTES} bytes"),
    "br": (lambda: coded("br"), "content coding 'br' is refused"),
    "zstd": (lambda: coded("zstd"), "content coding 'zstd' is refused"),
    "x-foo": (lambda: coded("x-foo"), "content coding 'x-foo' is refused"),
    "gzip, br": (lambda: coded("gzip, br"), "stacked content codings are refused"),
    "corrupt gzip": (lambda: coded("gzip", b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff\xff\xff\xff"), "compressed body is corrupt"),
    "endless body": (lambda: endless(), f"larger than {MAX_BYTES} bytes"),
    "slow drip": (lambda: drip(every=0.05), "no answer within 1.0 s"),
    "deep JSON": (lambda: deep_json(), "not JSON"),
    "deep extensions": (lambda: served_as_is(nested_extensions()), "nests too deeply"),
}


@pytest.mark.parametrize("trick", list(TRICKS))
def test_regression_ehr_double_gzip_bomb_and_friends_cost_bounded_memory_and_work(
        make_client, hostile: HostileEhr, crd, trick: str) -> None:
    client = make_client(fhir_servers=(hostile.url,), ehr_timeout_seconds=1.0, ehr_max_bytes=MAX_BYTES)
    hostile.hold({"resourceType": "Patient", "id": "p1"})
    assert post(client, call(hostile)).status_code == 200  # warm: models imported, connections known
    make, why = TRICKS[trick]
    hostile.tricks["Patient/p1"] = make()
    response, memory, cpu = measured(lambda: post(client, call(hostile)))
    assert memory < MEMORY_BOUND, f"{trick}: +{memory / MIB:.0f} MiB"
    assert cpu < CPU_BOUND, f"{trick}: {cpu:.1f} s of CPU"
    assert response.status_code == 200, response.text
    assert_answered_without(response.json(), crd, why)


def test_a_resource_nested_past_the_models_depth_is_a_400_not_a_500(client) -> None:
    request = order_sign(service_request("s1", "15823"))
    request["prefetch"]["patient"] = nested_extensions()
    response = post(client, request)
    assert response.status_code == 400, response.text
    assert "nests too deeply" in response.json()["issue"][0]["diagnostics"]


def read_patient(url: str, limits: EhrLimits) -> tuple[EhrClient, BaseException | None]:
    """Read Patient/p1 with a fresh client; the client (its ``held`` bytes) and what was raised."""
    async def read() -> tuple[EhrClient, BaseException | None]:
        async with EhrClient(url, "token", limits) as client:
            try:
                await client.read("Patient/p1")
            except EhrError as err:
                return client, err
            return client, None
    return asyncio.run(read())


def test_a_bomb_is_decoded_no_further_than_the_limit(hostile: HostileEhr) -> None:
    hostile.tricks["Patient/p1"] = bomb(256 * MIB)
    (client, error), memory, _ = measured(lambda: read_patient(hostile.url, EhrLimits(max_bytes=MAX_BYTES)))
    assert isinstance(error, EhrError) and f"larger than {MAX_BYTES} bytes" in str(error)
    assert memory < 3 * MAX_BYTES, f"+{memory / MIB:.1f} MiB for a limit of {MAX_BYTES / MIB:.1f} MiB"
    assert client.held == 0  # what a refused response held is given back to the call's budget


def test_covreq_asks_for_gzip_and_deflate_only_and_reads_them(hostile: HostileEhr) -> None:
    patient = b'{"resourceType": "Patient", "id": "p1", "gender": "female"}'
    for coding, body in [("gzip", gzip.compress(patient)), ("deflate", zlib.compress(patient)),
                         ("identity", patient), ("GZIP", gzip.compress(patient))]:
        hostile.tricks["Patient/p1"] = coded(coding, body)
        client, error = read_patient(hostile.url, EhrLimits())
        assert error is None, (coding, error)
        assert client.held == len(patient)
    assert hostile.seen[-1].accept_encoding == "gzip, deflate"


def test_data_after_a_gzip_body_is_refused(hostile: HostileEhr) -> None:
    hostile.tricks["Patient/p1"] = coded("gzip", gzip.compress(b'{"resourceType": "Patient", "id": "p1"}') * 2)
    _, error = read_patient(hostile.url, EhrLimits())
    assert error is not None and "data after its compressed body" in str(error)


# -- issue 24, item 6: the EHR phase of a call has one deadline and one byte budget ------------------

def within(client: TestClient, deadline: float) -> TestClient:
    """``client`` with its EHR policy's deadline for the EHR phase of a call set to ``deadline``."""
    client.app.state.ehr_policy = replace(client.app.state.ehr_policy, deadline=deadline)
    return client


def test_the_settings_bound_the_ehr_phase_of_a_call(make_client) -> None:
    client = make_client(fhir_servers=("https://ehr.example.org/fhir",), ehr_call_seconds=2.5,
                         ehr_call_max_bytes=123_456)
    policy = client.app.state.ehr_policy
    assert (policy.deadline, policy.limits.call_bytes) == (2.5, 123_456)
    assert Settings.from_env({"COVREQ_EHR_CALL_SECONDS": "1.5", "COVREQ_EHR_CALL_MAX_BYTES": "1000"}) == \
        Settings(ehr_call_seconds=1.5, ehr_call_max_bytes=1000)


def roles_call(ehr: HostileEhr, count: int, telecoms: int) -> dict[str, Any]:
    """A call of ``count`` orders, each by its own requester PractitionerRole held only by the EHR,
    each with ``telecoms`` telecom entries (30,000: 1.8 MB, ~0.4 s of R4 checks)."""
    orders = []
    for number in range(count):
        order = service_request(f"s{number}", "15823", pos="22")
        order["requester"] = {"reference": f"PractitionerRole/r{number}"}
        orders.append({"resource": order})
        ehr.tricks[f"PractitionerRole/r{number}"] = served_as_is({
            "resourceType": "PractitionerRole", "id": f"r{number}", "telecom": [
                {"system": "phone", "value": f"555-{i:06d}-{number}", "use": "work"} for i in range(telecoms)]})
    ehr.hold({"resourceType": "Patient", "id": "p1"})
    return granted({"hook": "order-sign", "hookInstance": "attack-ehr-6", "context": {
        "userId": "Practitioner/u1", "patientId": "p1",
        "draftOrders": {"resourceType": "Bundle", "type": "collection", "entry": orders}}}, ehr)


@pytest.fixture()
def checks(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, float]]:
    """Every R4 check of a PractitionerRole from the EHR: (where, seconds it took), in order."""
    seen: list[tuple[str, float]] = []
    real = r4.problems

    def problems(resource: dict[str, Any], where: str) -> list[r4.Problem]:
        began = time.monotonic()
        found = real(resource, where)
        if where.startswith("PractitionerRole/"):
            seen.append((where, time.monotonic() - began))
        return found
    monkeypatch.setattr(r4, "problems", problems)
    return seen


def test_regression_ehr_r4_checks_ignore_the_calls_byte_budget(make_client, hostile: HostileEhr, crd,
                                                               checks: list[tuple[str, float]]) -> None:
    client = within(make_client(fhir_servers=(hostile.url,)), deadline=60.0)  # the default budget, 4 MB
    request = roles_call(hostile, 8, 30_000)  # 8 x 1.8 MB, each under COVREQ_EHR_MAX_BYTES
    response, memory, _ = measured(lambda: post(client, request))
    assert response.status_code == 200, response.text
    assert len(checks) <= 2, f"{len(checks)} roles of 1.8 MB checked within a budget of 4 MB"
    assert memory < 120 * MIB, f"+{memory / MIB:.0f} MiB"
    assert len(response.json()["systemActions"]) == 8  # every order answered


def test_regression_ehr_r4_checks_ignore_the_calls_deadline(make_client, hostile: HostileEhr, crd,
                                                            checks: list[tuple[str, float]],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    real, cpu = r4.problems, threading.Lock()

    def slow(resource: dict[str, Any], where: str) -> list[r4.Problem]:
        if where.startswith("PractitionerRole/"):
            with cpu:  # a check of ~1 MB: CPU work, one thread at a time as under the GIL
                time.sleep(0.25)
        return real(resource, where)
    monkeypatch.setattr(r4, "problems", slow)
    client = within(make_client(fhir_servers=(hostile.url,)), deadline=1.0)
    request = roles_call(hostile, 20, 1)
    began = time.monotonic()
    response = post(client, request)
    assert response.status_code == 200, response.text
    assert len(checks) <= 6, f"{len(checks)} checks of 0.25 s each in a deadline of 1 s"
    assert time.monotonic() - began < 15  # 20 checks would take 5 s, the deadline 1 s
    assert len(response.json()["systemActions"]) == 20


def test_a_late_query_fails_alone(make_client, hostile: HostileEhr, crd) -> None:
    client = within(make_client(fhir_servers=(hostile.url,), ehr_timeout_seconds=5.0), deadline=1.0)
    hostile.hold({"resourceType": "Patient", "id": "p1"})
    hostile.tricks["Condition"] = drip(every=0.05)  # outlives the call's deadline
    response = post(client, call(hostile))
    assert response.status_code == 200, response.text
    opened = by_code(repetitions(response.json(), "ServiceRequest/open", crd), crd)["15823"]
    why = value(opened, "reason")[0]["text"]
    assert "GET Condition: unanswered within the call's deadline" in why
    assert "Patient/p1" not in why and "Coverage" not in why  # they came in time and are kept


# -- a real server: /healthz stays responsive and memory bounded during a hostile EHR's call --------

def _peak_rss(pid: int) -> int:
    """The process's peak resident memory (VmHWM) in bytes."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))) * 1024


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc")
@pytest.mark.parametrize("trick", ["stacked gzip bomb", "gzip bomb"])
def test_healthz_answers_and_memory_stays_bounded_while_a_hostile_ehr_is_read(
        tmp_path: Path, hostile: HostileEhr, trick: str) -> None:
    hostile.hold({"resourceType": "Patient", "id": "p1"})
    env = {"COVREQ_FHIR_SERVERS": hostile.url, "COVREQ_EHR_MAX_BYTES": str(MAX_BYTES),
           "COVREQ_EHR_TIMEOUT_SECONDS": "2", "COVREQ_PAYERS": str(FIXTURE_RULES.parent / "payers.yaml")}
    with served(tmp_path, "--rules", str(FIXTURE_RULES), env=env) as server:
        url = f"{server.base}/cds-services/order-sign-crd"
        assert httpx.post(url, json=call(hostile), timeout=30).status_code == 200  # warm
        Path(f"/proc/{server.process.pid}/clear_refs").write_text("5")  # resets VmHWM
        baseline = _peak_rss(server.process.pid)
        hostile.tricks["Patient/p1"] = TRICKS[trick][0]()
        hostile.tricks["Condition"] = drip(every=0.05)  # the call lasts the query timeout, 2 s
        waits: list[float] = []
        done = threading.Event()

        def probe() -> None:
            while not done.is_set():
                began = time.monotonic()
                assert httpx.get(f"{server.base}/healthz", timeout=30).status_code == 200
                waits.append(time.monotonic() - began)
                time.sleep(0.02)
        prober = threading.Thread(target=probe)
        prober.start()
        try:
            response = httpx.post(url, json=call(hostile), timeout=30)
        finally:
            done.set()
            prober.join()
        assert response.status_code == 200, response.text
        assert len(waits) >= 10 and max(waits) < 2.0, f"/healthz waited up to {max(waits):.2f} s"
        grown = _peak_rss(server.process.pid) - baseline
        assert grown < 64 * MIB, f"{trick}: peak RSS +{grown / MIB:.0f} MiB"
