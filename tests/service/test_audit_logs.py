"""Logs and the audit trail: every decision audited, no patient identifiers in either."""
from __future__ import annotations

import io
import json
import logging
from pathlib import Path
from typing import Any, Iterator

import pytest

from service.logs import JsonFormatter

PATIENT_ID = "pt-93c1f7e2"
BIRTH_DATE = "1931-07-19"
DIAGNOSES = ["S72.001A", "M81.0"]
CDS_PATH = "/cds-services/order-sign-crd"
V1_REQUEST = {"payer": "acme", "date_of_service": "2024-03-14", "place_of_service": "22",
              "patient": {"id": PATIENT_ID, "birth_date": BIRTH_DATE, "sex": "female"},
              "diagnoses": DIAGNOSES, "services": [{"code": "15823"}, {"code": "77061"}]}


def _secrets() -> list[str]:
    return [PATIENT_ID, BIRTH_DATE, *DIAGNOSES, *(d.replace(".", "") for d in DIAGNOSES)]


@pytest.fixture()
def every_log() -> Iterator[io.StringIO]:
    """Everything any logger writes at DEBUG and above, formatted as the service's JSON lines."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(JsonFormatter())
    root, covreq = logging.getLogger(), logging.getLogger("covreq")
    saved = root.level, covreq.level, covreq.propagate
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    covreq.setLevel(logging.DEBUG)
    covreq.propagate = True  # logs.configure() may have turned it off
    yield buffer
    root.removeHandler(handler)
    root.setLevel(saved[0])
    covreq.setLevel(saved[1])
    covreq.propagate = saved[2]


def _cds_request(ig_order_sign: Any) -> dict[str, Any]:
    """The CRD anchor request with a distinctive patient id, birth date and diagnoses."""
    request = ig_order_sign()
    request["context"]["patientId"] = PATIENT_ID
    patient = request["prefetch"]["patient"]
    patient.update({"id": PATIENT_ID, "birthDate": BIRTH_DATE})
    for entry in request["context"]["draftOrders"]["entry"]:
        entry["resource"]["subject"] = {"reference": f"Patient/{PATIENT_ID}"}
        entry["resource"]["reasonCode"] = [{"coding": [
            {"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": code}]} for code in DIAGNOSES]
    return request


def _audit(tmp_path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]


def test_no_patient_identifier_reaches_the_logs_or_the_audit_file(client, ig_order_sign, every_log, tmp_path) -> None:
    assert client.post("/v1/requirements", json=V1_REQUEST).status_code == 200
    assert client.post(CDS_PATH, json=_cds_request(ig_order_sign)).status_code == 200
    refused = {**V1_REQUEST, "patient": {"id": PATIENT_ID, "birth_date": BIRTH_DATE + "x"}}
    assert client.post("/v1/requirements", json=refused).status_code == 422
    broken = _cds_request(ig_order_sign)
    broken["context"]["draftOrders"]["entry"][0]["resource"]["occurrenceDateTime"] = "not-a-date " + BIRTH_DATE
    assert client.post(CDS_PATH, json=broken).status_code < 500
    logs = every_log.getvalue()
    assert [json.loads(line)["event"] for line in logs.splitlines() if '"event"' in line].count("request") == 4
    audit = (tmp_path / "audit.jsonl").read_text()
    for secret in _secrets():
        assert secret not in logs, f"{secret} was logged"
        assert secret not in audit, f"{secret} was audited"


def test_a_v1_decision_is_audited_with_caller_codes_answers_and_rule_set(client, tmp_path) -> None:
    response = client.post("/v1/requirements", json=V1_REQUEST, headers={"X-Request-Id": "visit-42"})
    (record,) = _audit(tmp_path)
    assert record["api"] == "v1" and record["status"] == 200 and record["request_id"] == "visit-42"
    assert record["caller"] == {"kind": "anonymous", "name": "anonymous"}
    assert record["ruleset"] == response.json()["ruleset"] == response.headers["x-covreq-ruleset"]
    assert record["decisions"] == [{k: d[k] for k in ("code", "system", "pa_needed", "covered")}
                                   for d in response.json()["decisions"]]
    assert record["ts"].endswith("+00:00")


def test_a_cds_call_is_audited_with_hook_instance_and_coverage_assertion_ids(client, ig_order_sign, tmp_path) -> None:
    request = _cds_request(ig_order_sign)
    body = client.post(CDS_PATH, json=request).json()
    (record,) = _audit(tmp_path)
    assert (record["api"], record["hook"], record["service"]) == ("cds-hooks", "order-sign", "order-sign-crd")
    assert record["hookInstance"] == request["hookInstance"] and record["ruleset"] == body["extension"]["covreq.ruleset"]
    answered = [sub["valueString"] for action in body["systemActions"] for ext in action["resource"]["extension"]
                if ext["url"].endswith("ext-coverage-information")
                for sub in ext["extension"] if sub["url"] == "coverage-assertion-id"]
    assert [d["coverage_assertion_id"] for d in record["decisions"]] == answered and answered
    assert all(d["code"] and d["covered"] for d in record["decisions"])


def test_refused_calls_are_audited_with_status_and_place_only(client, ig_order_sign, tmp_path) -> None:
    client.post("/v1/requirements", json={**V1_REQUEST, "date_of_service": "3024-01-01"})
    client.post("/v1/requirements", content=b"{not json")
    request = _cds_request(ig_order_sign)
    del request["context"]["patientId"]
    client.post(CDS_PATH, json=request)
    records = _audit(tmp_path)
    assert [(r["api"], r["status"], r["error_location"]) for r in records] == [
        ("v1", 422, "date_of_service"), ("v1", 400, ""), ("cds-hooks", 400, "context.patientId")]
    assert records[2]["hookInstance"] == request["hookInstance"]
    assert "3024" not in (tmp_path / "audit.jsonl").read_text()


def test_the_audit_file_is_appended_to_never_rewritten(make_client, tmp_path) -> None:
    path = tmp_path / "kept.jsonl"
    path.write_text('{"earlier": true}\n')
    for _ in range(2):  # two service lifetimes on the same file
        make_client(audit_path=path).post("/v1/requirements", json=V1_REQUEST)
    lines = path.read_text().splitlines()
    assert lines[0] == '{"earlier": true}' and len(lines) == 3
    assert all(json.loads(line)["api"] == "v1" for line in lines[1:])


def test_a_request_id_that_is_not_a_plain_token_is_replaced(client, tmp_path) -> None:
    client.post("/v1/requirements", json=V1_REQUEST, headers={"X-Request-Id": "x" * 200})
    client.post("/v1/requirements", json=V1_REQUEST, headers={"X-Request-Id": f"{PATIENT_ID} {BIRTH_DATE}"})
    ids = [r["request_id"] for r in _audit(tmp_path)]
    assert all(len(i) == 32 for i in ids) and ids[0] != ids[1]


def test_an_unwritable_audit_file_is_logged_and_the_answer_still_goes_out(make_client, tmp_path, every_log) -> None:
    folder = tmp_path / "audit-folder"
    folder.mkdir()
    client = make_client(audit_path=folder / "audit.jsonl")
    (folder / "audit.jsonl").unlink()
    folder.rmdir()  # the folder goes away while the service runs
    response = client.post("/v1/requirements", json=V1_REQUEST)
    assert response.status_code == 200
    events = [json.loads(line) for line in every_log.getvalue().splitlines()]
    failed = [e for e in events if e.get("event") == "audit_write_failed"]
    assert len(failed) == 1 and failed[0]["failures"] == 1 and failed[0]["level"] == "error"
    assert not any(secret in every_log.getvalue() for secret in _secrets())


def test_an_audit_line_is_one_json_object_even_for_text_orjson_refuses() -> None:
    from service.audit import _line
    assert json.loads(_line({"a": "é", "n": 1})) == {"a": "é", "n": 1} and _line({"a": 1}).endswith(b"\n")
    assert json.loads(_line({"hook": "\ud800"})) == {"hook": "\ud800"}
