"""Shared fixtures: paths of the fixture trees, loaded rule sets and the image built from the Dockerfile."""
from __future__ import annotations

from pathlib import Path

import pytest

import engine
from tests.dockerfile_build import Built, build

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture(scope="session")
def good_rules() -> engine.RuleSet:
    """The small, valid fixture tree (Medicare blepharoplasty and Acme imaging)."""
    return engine.load(FIXTURES / "good")


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """The Dockerfile's steps run once a session (tests/dockerfile_build.py): its wheel and a fresh
    virtualenv with that wheel and its dependencies installed, shared by the image and wheel tests
    (mark a module using it ``xdist_group("built-image")`` so that it is built on one worker only)."""
    return build(tmp_path_factory.mktemp("image"))
