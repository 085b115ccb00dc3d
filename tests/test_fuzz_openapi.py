"""schemathesis against the service's own OpenAPI document: no generated call gets a 5xx.

Each operation gets a CI-sized number of examples; ``COVREQ_FUZZ_EXAMPLES`` raises it
(docs/operations.md, "Fuzzing").
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from service import Settings, create_app

SERVICE_TESTS = Path(__file__).resolve().parent / "service"
EXAMPLES = int(os.environ.get("COVREQ_FUZZ_EXAMPLES", "40"))
AUDIT = Path(tempfile.mkdtemp(prefix="covreq-fuzz-")) / "audit.jsonl"

app = create_app(str(SERVICE_TESTS / "fixtures" / "rules"),
                 Settings(payers=SERVICE_TESTS / "fixtures" / "payers.yaml", audit_path=AUDIT,
                          data_dir=AUDIT.parent / "data"))  # the database PAS opens on first use
schema = schemathesis.openapi.from_asgi("/openapi.json", app)


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
def test_no_generated_call_gets_a_server_error(case: schemathesis.Case) -> None:
    case.call_and_validate(checks=[not_a_server_error])
