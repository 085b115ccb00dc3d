"""docs/operations.md states the code's limits, settings and examples exactly."""
from __future__ import annotations

import importlib
import json
import re
import shutil
from pathlib import Path
from typing import Any

import jwt
from admin import ADMIN
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from service.auth import load_api_keys, load_issuers
from service.settings import Settings
from service.smart.clients import load_clients

REPO = Path(__file__).resolve().parents[2]
FIXTURE_RULES = REPO / "tests" / "service" / "fixtures" / "rules"
DOC = (REPO / "docs" / "operations.md").read_text(encoding="utf-8")
EXAMPLES = {m["name"]: m["body"] for m in re.finditer(
    r"<!-- example: (?P<name>[\w-]+) -->\n```\w*\n(?P<body>.*?)\n```", DOC, re.S)}
ROWS = [line for line in DOC.splitlines() if line.startswith("| ") and "`" in line]


def _constant(dotted: str) -> Any:
    module, _, name = dotted.rpartition(".")
    if module.endswith("Settings"):
        return getattr(Settings(), name)
    if module.rpartition(".")[2][:1].isupper():  # a class attribute, e.g. a dataclass default
        module, _, owner = module.rpartition(".")
        return getattr(getattr(importlib.import_module(module), owner), name)
    return getattr(importlib.import_module(module), name)


def test_every_limit_in_the_table_is_the_code_constant() -> None:
    checked = 0
    for row in ROWS:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        names = re.findall(r"`((?:engine|service)\.[\w.]+)`", cells[1]) if len(cells) == 4 else []
        if not names:
            continue
        documented = [int(n.replace(",", "")) for n in re.findall(r"\d[\d,]*", cells[2])]
        assert [_constant(name) for name in names] == documented, row
        checked += 1
    assert checked >= 43  # the table's rows as of this writing: a parser that finds none fails


def test_every_setting_from_the_environment_is_documented() -> None:
    source = (REPO / "service" / "settings.py").read_text() + (REPO / "service" / "server.py").read_text()
    in_code = set(re.findall(r'"(COVREQ_[A-Z_]+)"', source))
    in_doc = set(re.findall(r"^\| `(COVREQ_[A-Z_]+)` \|", DOC, re.M))
    assert in_code == in_doc


def test_the_issuer_and_api_key_examples_load(tmp_path: Path) -> None:
    (tmp_path / "issuers.yaml").write_text(EXAMPLES["issuers"])
    public = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    (tmp_path / "ehr-jwks.json").write_text(json.dumps(
        {"keys": [{**json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(public)), "kid": "ehr-1"}]}))
    (tmp_path / "clinic.pem").write_bytes(ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    issuers = load_issuers(tmp_path / "issuers.yaml")
    assert set(issuers) == {"https://ehr.example.org", "https://clinic.example.org", "https://hospital.example.org"}
    assert set(issuers["https://clinic.example.org"].keys) == {"clinic-2024"}
    (tmp_path / "keys.yaml").write_text(EXAMPLES["api-keys"])
    assert set(load_api_keys(tmp_path / "keys.yaml")) == {"billing-office", "lookup-page"}


def test_the_smart_clients_example_loads(tmp_path: Path) -> None:
    (tmp_path / "smart-clients.yaml").write_text(EXAMPLES["smart-clients"])
    clients = load_clients(tmp_path / "smart-clients.yaml")
    assert clients["inferno-dtr"].jwks_uri and [str(s) for s in clients["clinic-ehr"].scopes] == ["system/*.read"]
    assert clients["clinic-ehr"].keys["clinic-2026"].algorithms == ("ES384",)


def _shape(value: Any) -> Any:
    """Keys all the way down, values dropped: what two records must share."""
    if isinstance(value, dict):
        return {key: _shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_shape(value[0])] if value else []
    return type(value).__name__


def test_the_failure_examples_are_what_a_broken_reload_shows(tmp_path: Path, make_client, caplog) -> None:
    rules = Path(shutil.copytree(FIXTURE_RULES, tmp_path / "rules"))
    client = make_client(rules)
    eyelid = rules / "acme" / "eyelid-surgery.yaml"
    eyelid.write_text(re.sub(r"place_of_service\b", "place_of_sevice", eyelid.read_text(), count=1))
    with caplog.at_level("ERROR", logger="covreq.reload"):
        assert client.post("/admin/reload", headers=ADMIN).status_code == 422
    (record,) = [r for r in caplog.records if getattr(r, "event", "") == "reload-failed"]
    logged = json.loads(EXAMPLES["reload-failed-log"])
    assert (record.levelname.lower(), record.name, record.event) == (logged["level"], logged["logger"], logged["event"])
    assert record.problem == str(rules / "acme" / "eyelid-surgery.yaml") + logged["problem"].removeprefix(
        "rules/acme/eyelid-surgery.yaml")
    ready = client.get("/readyz").json()
    documented = json.loads(EXAMPLES["readyz-degraded"])
    assert _shape(ready) == _shape(documented) and ready["status"] == documented["status"]
    assert ready["last_reload_error"]["problems"] == [": ".join(record.problem.split(": ")[:2])]


def test_the_audit_examples_have_the_fields_of_real_records(client, ig_order_sign, tmp_path: Path) -> None:
    client.post("/v1/requirements", json={"payer": "acme", "services": [{"code": "15823"}]},
                headers={"X-Request-Id": "visit-42"})
    client.post("/cds-services/order-sign-crd", json=ig_order_sign())
    v1, cds = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    v1_doc, cds_doc = json.loads(EXAMPLES["audit-v1"]), json.loads(EXAMPLES["audit-cds"])
    assert set(v1) == set(v1_doc) and _shape(v1["decisions"]) == _shape(v1_doc["decisions"])
    assert set(cds) == set(cds_doc) and _shape(cds["decisions"][:1]) == _shape(cds_doc["decisions"])



def test_the_production_checklist_names_only_sections_settings_and_metrics_that_exist() -> None:
    """Issue 26: the checklist an operator follows top to bottom points at real sections, settings
    and metrics of this page (a renamed section or setting would leave it pointing nowhere)."""
    checklist = DOC.split("## Production checklist\n", 1)[1].split("\n## ", 1)[0]
    flat = " ".join(checklist.split())
    headings = set(re.findall(r"^#{2,3} (.+)$", DOC, re.M))
    cited = re.findall(r'"([^"]+)"', flat)
    assert len(cited) >= 20 and [c for c in cited if c not in headings] == []
    settings = set(re.findall(r"^\| `(COVREQ_[A-Z_]+)` \|", DOC, re.M))
    named = set(re.findall(r"`(COVREQ_[A-Z_]+)`", checklist))
    assert len(named) >= 20 and named <= settings
    metrics = set(re.findall(r"^\| `(covreq_[a-z_]+)` \|", DOC, re.M))
    assert set(re.findall(r"`(covreq_[a-z_]+)`", checklist)) <= metrics
    steps = re.findall(r"^(\d+)\. \*\*", checklist, re.M)
    assert steps == [str(n) for n in range(1, len(steps) + 1)]
