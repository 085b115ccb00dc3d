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

import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any, Callable, Iterator

import httpx
import pytest
from crd_calls import by_code, post, repetitions, service_request, value
from ehr_stub import Reply
from hostile_ehr import MIB, HostileEhr, bomb, coded, deep_json, drip, endless, stacked_bomb
from serving import served
from test_crd_ehr_queries import coverage_of, granted

from service.ehr_client import EhrClient, EhrError, EhrLimits
from service.fhir import r4

FIXTURE_RULES = Path(__file__).resolve().parent / "fixtures" / "rules"
MAX_BYTES = 1_000_000  # COVREQ_EHR_MAX_BYTES in these tests
MEMORY_BOUND = 24 * MIB  # traced memory a call may add at its peak: a few times MAX_BYTES, far below a bomb
CPU_BOUND = 10.0  # seconds of the process's CPU a call may take; the bombs cost minutes


@pytest.fixture()
def hostile() -> Iterator[HostileEhr]:
    """A hostile EHR on loopback holding Acme's Coverage of p1; tricks are set by each test."""
    from ehr_stub import serve
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


def read_patient(url: str, limits: EhrLimits) -> tuple[EhrClient, BaseException | None]:
    """Read Patient/p1 with a fresh client; the client (its ``held`` bytes) and what was raised."""
    import asyncio

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
    import gzip
    import zlib
    patient = b'{"resourceType": "Patient", "id": "p1", "gender": "female"}'
    for coding, body in [("gzip", gzip.compress(patient)), ("deflate", zlib.compress(patient)),
                         ("identity", patient), ("GZIP", gzip.compress(patient))]:
        hostile.tricks["Patient/p1"] = coded(coding, body)
        client, error = read_patient(hostile.url, EhrLimits())
        assert error is None, (coding, error)
        assert client.held == len(patient)
    assert hostile.seen[-1].accept_encoding == "gzip, deflate"


def test_data_after_a_gzip_body_is_refused(hostile: HostileEhr) -> None:
    import gzip
    hostile.tricks["Patient/p1"] = coded("gzip", gzip.compress(b'{"resourceType": "Patient", "id": "p1"}') * 2)
    _, error = read_patient(hostile.url, EhrLimits())
    assert error is not None and "data after its compressed body" in str(error)


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
