"""The CQL reference engine for tests: cql-execution and cql-exec-fhir (pinned in tests/cql), run
with node, and the reference CQL-to-ELM translator (@cqframework/cql, its JavaScript build). The packages are installed by the tests themselves (``npm ci`` into a cache directory
keyed by the lock file) when tests/cql has no node_modules; the tests skip only without node."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Any

import pytest

CQL_DIR = Path(__file__).resolve().parents[2] / "cql"
RUNNER = CQL_DIR / "run.js"
TRANSLATOR = CQL_DIR / "translate.js"


def _cache_root() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "covreq-cql"


@lru_cache(maxsize=1)
def node_modules() -> Path:
    """Where cql-execution is installed: tests/cql/node_modules, else a cache directory filled by
    ``npm ci`` from the committed lock file (once per lock file)."""
    if shutil.which("node") is None:
        pytest.skip("node is not installed: the generated ELM cannot be run with cql-execution")
    local = CQL_DIR / "node_modules"
    if all((local / name).is_dir() for name in ("cql-execution", "cql-exec-fhir", "@cqframework")):
        return local
    lock = (CQL_DIR / "package-lock.json").read_bytes()
    target = _cache_root() / hashlib.sha256(lock).hexdigest()[:16]
    if not all((target / "node_modules" / name).is_dir() for name in ("cql-exec-fhir", "@cqframework")):
        npm = shutil.which("npm")
        assert npm is not None, "node is installed but npm is not: cannot install cql-execution"
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=target.parent))
        for name in ("package.json", "package-lock.json"):
            shutil.copy(CQL_DIR / name, staging / name)
        subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--ignore-scripts"], cwd=staging, check=True,
                       capture_output=True, timeout=600)
        try:
            staging.rename(target)
        except OSError:  # another process installed it first
            shutil.rmtree(staging, ignore_errors=True)
    return target / "node_modules"


def run_elm(libraries: dict[str, dict[str, Any]], cases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every define's value per case (``{"library", "bundle", "parameters"}``), the cases run by one
    node process."""
    modules = node_modules()
    env = {**os.environ, "NODE_PATH": str(modules)}
    done = subprocess.run(["node", str(RUNNER)], input=json.dumps({"libraries": libraries, "cases": cases}),
                          capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def translate(sources: dict[str, str]) -> dict[str, dict[str, Any]]:
    """Each CQL text translated to ELM by the reference translator (@cqframework/cql), with its
    errors: ``{"elm": ..., "errors": [...]}`` per key, all in one node process."""
    modules = node_modules()
    done = subprocess.run(["node", str(TRANSLATOR), str(modules)], input=json.dumps(sources), capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]
