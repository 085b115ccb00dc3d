"""The Dockerfile builds an image that serves covreq as a non-root user on a read-only root
filesystem, with a health check on /readyz.

Docker is not available where these tests run, so they build what they can: the Dockerfile is
parsed; its build stage's files are copied into a fresh folder (so a missing COPY fails) and its
``pip`` steps run there and into a fresh virtualenv, every absolute path moved under a temporary
"root"; its CMD then starts on a free loopback port (127.0.0.1 for 0.0.0.0) with the image's
environment, and its HEALTHCHECK command must pass once the service is ready. What is not run is
checked as text: the base image is a slim Python, USER is the non-root user the image creates, the
writable paths are under the VOLUME, .dockerignore lets in only what is copied. This machine's
Python (not the image's) runs the steps; the user is not switched (the tests run as whoever runs
them), so the read-only root is checked by the files the service leaves outside the volume and /tmp.
"""
from __future__ import annotations

import json
import re
import shlex
import signal
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest

from covreq.cli import build_parser
from tests.dockerfile_build import BUILD, IMAGE, ROOT, Built, environment
from tests.service.serving import free_port

DOCS = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")


def test_the_image_is_slim_python_run_by_a_non_root_user_it_creates() -> None:
    assert re.fullmatch(r"python:3\.\d+-slim(-\w+)?", IMAGE.image) and BUILD.image == IMAGE.image
    user, _, group = IMAGE.one("USER").partition(":")
    assert user.isdigit() and int(user) >= 1000 and group in ("", user), "a numeric uid: runAsNonRoot can check it"
    creates = " ".join(IMAGE.all("RUN"))
    assert f"useradd --system --uid {user} " in creates and "--shell /usr/sbin/nologin" in creates
    assert [word for word, _ in IMAGE.steps].index("USER") > max(
        i for i, (word, _) in enumerate(IMAGE.steps) if word in ("RUN", "COPY")), "nothing runs as root after USER"


def test_writable_paths_are_under_the_volume_and_documented() -> None:
    (volume,) = json.loads(IMAGE.one("VOLUME"))
    env = environment(IMAGE)
    for writable in (Path(env["COVREQ_AUDIT"]).parent, Path(env["COVREQ_BUNDLE_DIR"]), Path(IMAGE.one("WORKDIR"))):
        assert writable == Path(volume) or Path(volume) in writable.parents, writable
    assert f"chown 10001:10001 {volume}" in " ".join(IMAGE.all("RUN"))
    documented = set(re.findall(r"^\| `(COVREQ_[A-Z_]+)` \|", DOCS, re.M))
    assert {name for name in env if name.startswith("COVREQ_")} <= documented
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"


def test_the_command_and_health_check_are_what_covreq_serve_and_readyz_take() -> None:
    command = json.loads(IMAGE.one("CMD"))
    args = build_parser().parse_args(command[1:])  # exits (fails the test) on an unknown option
    assert command[:2] == ["covreq", "serve"] and args.host == "0.0.0.0" and args.rules is None
    assert IMAGE.one("EXPOSE") == str(args.port)
    options, _, check = IMAGE.one("HEALTHCHECK").partition("CMD ")
    assert "--interval=" in options and "--start-period=" in options
    probe = json.loads(check)
    assert probe[:2] == ["python", "-c"] and f"http://127.0.0.1:{args.port}/readyz" in probe[2]  # no curl in slim


def test_the_build_context_is_only_what_the_dockerfile_copies() -> None:
    lines = [line for line in (ROOT / ".dockerignore").read_text().splitlines() if line and not line.startswith("#")]
    assert lines[0] == "*", "everything is left out unless let in"
    let_in = {line[1:] for line in lines if line.startswith("!")}
    copied = {source for stage in (BUILD, IMAGE) for rest in stage.all("COPY") if not rest.startswith("--from")
              for source in shlex.split(rest)[:-1]}
    assert copied == let_in
    assert all((ROOT / source).exists() for source in copied)


def _files(folder: Path) -> set[Path]:
    return {path for path in folder.rglob("*") if path.is_file()}


@pytest.fixture()
def serving(built: Built) -> Iterator[tuple[int, subprocess.Popen[str]]]:
    """The image's CMD under its ENV and WORKDIR, on a free loopback port."""
    port = free_port()
    command = json.loads(IMAGE.one("CMD"))
    command[command.index("--port") + 1] = str(port)
    command[command.index("--host") + 1] = "127.0.0.1"
    env = {name: built.inside(value) for name, value in environment(IMAGE).items()}
    env.update(PATH=f"{built.venv / 'bin'}:/usr/bin:/bin", TMPDIR=str(built.root / "tmp"), HOME="/nonexistent")
    process = subprocess.Popen(command, cwd=built.inside(IMAGE.one("WORKDIR")), env=env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    yield port, process
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _health_check(built: Built, port: int) -> int:
    probe = json.loads(IMAGE.one("HEALTHCHECK").partition("CMD ")[2])
    probe[0] = str(built.venv / "bin" / "python")
    probe[2] = probe[2].replace("127.0.0.1:8000", f"127.0.0.1:{port}")
    return subprocess.run(probe, capture_output=True, timeout=10).returncode


def test_the_image_serves_passes_its_health_check_and_writes_only_to_the_volume_and_tmp(
        built: Built, serving: tuple[int, subprocess.Popen[str]]) -> None:
    port, process = serving
    outside = _files(built.root) - _files(built.root / "var") - _files(built.root / "tmp")
    installed = _files(built.venv)
    deadline = time.monotonic() + 90
    while _health_check(built, port) != 0:
        assert process.poll() is None, process.stdout.read() if process.stdout else ""
        assert time.monotonic() < deadline, "the health check never passed"
        time.sleep(0.5)
    body = json.dumps({"payer": "medicare", "services": [{"code": "15823"}]}).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/requirements", body,
                                     {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert json.loads(answer.read())["decisions"]
    volume = Path(built.inside(json.loads(IMAGE.one("VOLUME"))[0]))
    assert (volume / "audit.jsonl").read_text().count("\n") == 1  # COVREQ_AUDIT, under the volume
    assert _files(built.root) - _files(built.root / "var") - _files(built.root / "tmp") == outside
    assert _files(built.venv) == installed, "the service wrote into its installation"


def test_the_health_check_fails_when_nothing_answers(built: Built) -> None:
    assert _health_check(built, free_port()) != 0
