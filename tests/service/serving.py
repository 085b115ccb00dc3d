"""The service as a real process on loopback, for the tests that need signals, sockets and logs."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import httpx
import uvicorn


def free_port() -> int:
    """A TCP port nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def in_thread(app: Any) -> Iterator[str]:
    """``app`` served by uvicorn in a thread of this process on a free loopback port: its base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", log_config=None))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the service did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


#: How long a wait lasts before it fails the test. A wait ends as soon as what it waits for happens, so
#: this costs nothing to a passing test; it is long because starting a service (each worker imports the
#: service and loads the rules) takes seconds of CPU, which a busy machine or a parallel run stretches.
PATIENCE = 120.0


def wait_until(check: Callable[[], Any], seconds: float = PATIENCE) -> Any:
    """The first true value ``check()`` returns within ``seconds`` (HTTP and socket errors count as
    not yet); fails the test when there is none."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except (httpx.HTTPError, OSError):
            pass
        time.sleep(0.1)
    raise AssertionError("timed out")


@dataclass
class Served:
    """A running ``covreq serve``: its base URL, its process and the file its logs go to."""

    base: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    def events(self) -> list[dict[str, Any]]:
        """The JSON log lines written so far."""
        return [json.loads(line) for line in self.log.read_text().splitlines() if line.startswith("{")]


def started(running: Served) -> bool:
    """True once ``running`` answers ``/healthz`` with 200; fails the test at once if its process exited."""
    if running.process.poll() is not None:
        raise AssertionError(f"covreq serve exited ({running.process.returncode}): {running.log.read_text()[-2000:]}")
    return httpx.get(f"{running.base}/healthz").status_code == 200


@contextmanager
def served(folder: Path, *arguments: str, env: dict[str, str] | None = None) -> Iterator[Served]:
    """``covreq serve ARGUMENTS`` on a free port with JSON logs and the audit file in ``folder``,
    answering ``/healthz`` before the block runs; stopped after it."""
    port = free_port()
    log = folder / "server.log"
    environment = {**os.environ, "COVREQ_JSON_LOGS": "1", "COVREQ_AUDIT": str(folder / "audit.jsonl"), **(env or {})}
    with open(log, "w") as log_file:
        process = subprocess.Popen([sys.executable, "-m", "covreq", "serve", "--port", str(port), *arguments],
                                   stdout=log_file, stderr=log_file, env=environment)
    running = Served(f"http://127.0.0.1:{port}", port, process, log)
    try:
        wait_until(lambda: started(running))
        yield running
    finally:
        process.terminate()
        process.wait(timeout=20)
