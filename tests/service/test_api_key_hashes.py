"""API keys are stored as hashes: ``covreq hash-key`` makes the key file's line, the service takes
the key whose hash the file holds, and a key file in plain text stops the start, saying what to do."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from service.auth import AuthConfigError, load_api_keys
from service.settings import Settings

REPO = Path(__file__).resolve().parents[2]
ENV = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)}  # this checkout's covreq, whatever is installed
KEY = "Zq3vV1b0m5-tT8yH2kP9wXc4"
REQUEST = {"payer": "acme", "place_of_service": "22", "services": [{"code": "15823"}]}


def hash_key(*args: str, key: str = KEY + "\n") -> subprocess.CompletedProcess[str]:
    """``covreq hash-key`` as an operator runs it, the key piped on standard input."""
    return subprocess.run([sys.executable, "-m", "covreq", "hash-key", *args], input=key, capture_output=True,
                          text=True, timeout=60, env=ENV)


def test_the_command_prints_the_key_file_line_and_the_service_takes_that_key(make_client, tmp_path: Path) -> None:
    done = hash_key("billing-office")
    assert done.returncode == 0 and done.stderr == ""
    name, _, hashed = done.stdout.strip().partition(": ")
    assert name == "billing-office" and hashed.startswith("sha256:") and KEY not in done.stdout
    keys = tmp_path / "keys.yaml"
    keys.write_text(done.stdout)
    client = make_client(api_keys=keys)
    assert client.post("/v1/requirements", json=REQUEST, headers={"X-API-Key": KEY}).status_code == 200
    assert client.post("/v1/requirements", json=REQUEST, headers={"X-API-Key": hashed}).status_code == 401
    assert hash_key().stdout == hashed + "\n"  # without a name: the hash alone


@pytest.mark.parametrize("args, key, message", [
    ((), "too-short\n", "at least 16 characters"),
    ((), "two words of a key\n", "printable ASCII without spaces"),
    ((), "", "at least 16 characters"),
    (("billing office",), KEY, "a key name is letters"),
])
def test_the_command_refuses_what_cannot_be_a_key(args: tuple[str, ...], key: str, message: str) -> None:
    done = hash_key(*args, key=key)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith("covreq hash-key: ") and message in done.stderr


def test_a_key_file_in_plain_text_is_refused_with_the_command_to_run(tmp_path: Path) -> None:
    keys = tmp_path / "keys.yaml"
    keys.write_text(f"billing-office: {KEY}\n")
    with pytest.raises(AuthConfigError, match=r"key 'billing-office' is not a hash: .* `covreq hash-key billing-office`"):
        load_api_keys(keys)


def test_serve_with_a_plain_text_key_file_says_so_in_one_line(tmp_path: Path) -> None:
    keys = tmp_path / "keys.yaml"
    keys.write_text(f"billing-office: {KEY}\n")
    rules = REPO / "rules"
    done = subprocess.run([sys.executable, "-m", "covreq", "serve", "--rules", str(rules), "--port", "0"],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path,
                          env={**ENV, "COVREQ_API_KEYS": str(keys)})
    assert done.returncode == 1 and done.stderr.count("\n") == 1
    assert done.stderr.startswith(f"covreq serve: cannot start: {keys}: key 'billing-office' is not a hash")
    assert KEY not in done.stderr
    assert Settings.from_env({"COVREQ_API_KEYS": str(keys)}).api_keys == keys
