"""Shared fixtures: paths of the fixture trees, loaded rule sets and the image built from the Dockerfile."""
from __future__ import annotations

import fcntl
import os
import shutil
import socket
from pathlib import Path
from typing import Iterator

import pytest
from hypothesis import HealthCheck, settings

import engine
from covreq.cli import build_parser
from tests.dockerfile_build import Built, build

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
# Hypothesis on a busy machine: no per-example deadline and no "too slow to generate" health check (both
# fail a sound property when the machine is loaded, not when the code is wrong); the example counts are
# the tests' own. HYPOTHESIS_PROFILE=default restores Hypothesis's own settings.
settings.register_profile("covreq", deadline=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "covreq"))

#: The port ``covreq serve`` listens on by default: README command 1's, which a newcomer runs before the tests.
DEFAULT_PORT: int = build_parser().parse_args(["serve"]).port


@pytest.fixture(scope="session", autouse=True)
def default_port_taken() -> Iterator[None]:
    """Hold 127.0.0.1:DEFAULT_PORT for the whole session, as README command 1's service would: a test
    that needs that port (rather than a free one) fails on every run, not only on a newcomer's."""
    try:
        held = socket.create_server(("127.0.0.1", DEFAULT_PORT))
    except OSError:  # taken already: by that service, or by another xdist worker's hold
        yield
        return
    with held:
        yield


@pytest.fixture(scope="session")
def good_rules() -> engine.RuleSet:
    """The small, valid fixture tree (Medicare blepharoplasty and Acme imaging)."""
    return engine.load(FIXTURES / "good")


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """The Dockerfile's steps run once a run (tests/dockerfile_build.py): its wheel and a fresh
    virtualenv with that wheel and its dependencies installed, shared by the image and wheel tests.
    Under pytest-xdist the first worker to ask builds it in the run's temporary folder, under a lock
    the others wait on, and they all use that one build."""
    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent  # the run's folder, above each worker's own
    work = shared / "built-image"
    with open(shared / "built-image.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file is closed
        if not (work / "built").exists():
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir()
            build(work)
            (work / "built").touch()
    return Built(work / "root", work / "venv")
