"""Shared fixtures: paths of the fixture trees and loaded rule sets."""
from __future__ import annotations

from pathlib import Path

import pytest

import engine

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture(scope="session")
def good_rules() -> engine.RuleSet:
    """The small, valid fixture tree (Medicare blepharoplasty and Acme imaging)."""
    return engine.load(FIXTURES / "good")
