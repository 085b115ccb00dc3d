"""Fixtures of the PAS tests: the service on the bundled rules and payer file, its database in a
temporary data folder; the same with the blepharoplasty policy allowing automatic affirmation."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Callable

import pytest
from fastapi.testclient import TestClient
from pas_helpers import BUNDLED_RULES, REPO

from service import Settings, create_app

PAYERS = REPO / "service" / "payers.yaml"
BLEPHAROPLASTY = Path("medicare") / "opd" / "blepharoplasty.yaml"


@pytest.fixture()
def make_pas_client(tmp_path: Path) -> Callable[..., TestClient]:
    """Build a service on ``rules`` (the bundled rules unless given) whose PAS database is a SQLite file in
    ``tmp_path / "data"`` unless ``database_url`` is given; the audit trail in ``tmp_path / "audit.jsonl"``."""
    def build(rules: Path = BUNDLED_RULES, **overrides: Any) -> TestClient:
        defaults = {"payers": PAYERS, "audit_path": tmp_path / "audit.jsonl", "data_dir": tmp_path / "data"}
        return TestClient(create_app(str(rules), Settings(**{**defaults, **overrides})))
    return build


@pytest.fixture()
def pas_client(make_pas_client: Callable[..., TestClient]) -> TestClient:
    """The service on the bundled rules (no policy affirms automatically)."""
    return make_pas_client()


@pytest.fixture()
def affirming_rules(tmp_path: Path) -> Path:
    """A copy of the bundled rules whose blepharoplasty policy allows automatic affirmation."""
    rules = Path(shutil.copytree(BUNDLED_RULES, tmp_path / "rules"))
    policy = rules / BLEPHAROPLASTY
    text = policy.read_text(encoding="utf-8")
    assert "  valid_days: 120\n" in text
    policy.write_text(text.replace("  valid_days: 120\n", "  valid_days: 120\n  automatic_affirmation: true\n"),
                      encoding="utf-8")
    return rules


@pytest.fixture()
def affirming_client(make_pas_client: Callable[..., TestClient], affirming_rules: Path) -> TestClient:
    """The service on :func:`affirming_rules`."""
    return make_pas_client(affirming_rules)
