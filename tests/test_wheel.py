"""The built wheel carries its grammar and schemas: covreq works from a fresh virtualenv."""
from __future__ import annotations

import json
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(work / "dist"), str(ROOT)],
                   check=True, timeout=300)
    wheel = next((work / "dist").glob("covreq-*.whl"))
    env_dir = work / "venv"
    venv.create(env_dir, with_pip=True)
    subprocess.run([str(env_dir / "bin" / "pip"), "install", "-q", str(wheel)], check=True, timeout=600)
    return env_dir


def test_wheel_ships_grammar_and_schemas(wheel_venv: Path) -> None:
    import zipfile
    wheel = next(wheel_venv.parent.joinpath("dist").glob("covreq-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "engine/_data/grammar/condition.lark" in names
    assert "engine/schemas/policy.schema.json" in names


def test_installed_covreq_validates_and_evaluates_outside_the_source_tree(wheel_venv: Path, tmp_path: Path) -> None:
    covreq = str(wheel_venv / "bin" / "covreq")
    rules = str(ROOT / "tests" / "fixtures" / "good")
    validate = subprocess.run([covreq, "validate", rules], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert validate.returncode == 0, validate.stdout + validate.stderr
    request = json.dumps({"payer": "medicare", "date_of_service": "2023-03-14", "place_of_service": "22",
                          "services": [{"code": "15823"}]})
    result = subprocess.run([covreq, "eval", "--rules", rules], input=request, capture_output=True, text=True,
                            cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["decisions"][0]["pa_needed"] == "auth-needed"
    where = subprocess.run([str(wheel_venv / "bin" / "python"), "-c", "import engine; print(engine.__file__)"],
                           capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert str(wheel_venv) in where.stdout
