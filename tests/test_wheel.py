"""The built wheel carries its grammar and schemas: covreq works from a fresh virtualenv.

The wheel is the one the Dockerfile's build stage makes, installed with its dependencies into a
fresh virtualenv by its final stage's ``pip`` step (the ``built`` fixture, shared with
tests/test_container_image.py: building it is the costliest step of the suite).
"""
from __future__ import annotations

import json
import subprocess
import zipfile
from pathlib import Path

from tests.dockerfile_build import ROOT, Built, outside_the_source_tree


def test_wheel_ships_grammar_and_schemas(built: Built) -> None:
    names = zipfile.ZipFile(built.wheel).namelist()
    assert "engine/_data/grammar/condition.lark" in names
    assert "engine/schemas/policy.schema.json" in names


def test_installed_covreq_validates_and_evaluates_outside_the_source_tree(built: Built, tmp_path: Path) -> None:
    covreq = str(built.venv / "bin" / "covreq")
    rules = str(ROOT / "tests" / "fixtures" / "good")
    env = outside_the_source_tree()
    validate = subprocess.run([covreq, "validate", rules], capture_output=True, text=True, cwd=tmp_path, timeout=120,
                              env=env)
    assert validate.returncode == 0, validate.stdout + validate.stderr
    request = json.dumps({"payer": "medicare", "date_of_service": "2023-03-14", "place_of_service": "22",
                          "services": [{"code": "15823"}]})
    result = subprocess.run([covreq, "eval", "--rules", rules], input=request, capture_output=True, text=True,
                            cwd=tmp_path, timeout=120, env=env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["decisions"][0]["pa_needed"] == "auth-needed"
    where = subprocess.run([str(built.venv / "bin" / "python"), "-c", "import engine; print(engine.__file__)"],
                           capture_output=True, text=True, cwd=tmp_path, timeout=60, env=env)
    assert str(built.venv) in where.stdout
