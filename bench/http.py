"""HTTP measurements: ``covreq serve --workers 2`` on 127.0.0.1 driven by wrk.

wrk runs a generated Lua script that rotates over the request bodies (each made distinct by its own
``request_id`` when asked) and prints its own summary as JSON. Two modes: flat out (throughput), and paced (each connection waits between requests, so the
offered rate is about the one asked for) for latency at a given rate.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

HOST = "127.0.0.1"
_LUA = """
local bodies = {%(bodies)s}
local i = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local n = 0
function request()
  i = i %% #bodies + 1
  n = n + 1
  local body = bodies[i]
  if %(distinct)s then  -- each request its own: the body's last brace gives way to a fresh request_id
    body = string.sub(body, 1, -2) .. ', "request_id": "%(tag)s-' .. n .. '"}'
  end
  if %(renew)s ~= "" then  -- each request its own: the tag is replaced by a fresh value
    body = (string.gsub(body, %(renew)s, "%(tag)s-" .. n))
  end
  return wrk.format(nil, "%(path)s", nil, body)
end
%(delay)s
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('BENCH {"requests": %%d, "duration_us": %%d, "errors": %%d, "p50_us": %%d, "p99_us": %%d, "max_us": %%d}\\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.status + e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
"""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


@contextmanager
def serve(rules: Path, workers: int, env: dict[str, str], timeout_s: float = 300) -> Iterator[str]:
    """Run ``covreq serve`` on a free loopback port until the block ends; yields its base URL."""
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="covreq-bench-serve-")
    covreq = Path(sys.executable).with_name("covreq")
    proc = subprocess.Popen([str(covreq), "serve", "--rules", str(rules), "--host", HOST, "--port", str(port),
                             "--workers", str(workers)], cwd=workdir, env={**os.environ, **env},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    base = f"http://{HOST}:{port}"
    try:
        _wait_ready(base, proc, timeout_s)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(workdir, ignore_errors=True)


def _wait_ready(base: str, proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"covreq serve exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(base + "/readyz", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError("covreq serve did not become ready in time")


def warm(base: str, path: str, bodies: list[dict[str, Any]]) -> None:
    """Send every body once per worker-ish (a few rounds), so first-call costs are not measured."""
    for body in bodies * 2:
        request = urllib.request.Request(base + path, json.dumps(body).encode(),
                                         {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            response.read()


def wrk(base: str, path: str, bodies: list[dict[str, Any]], seconds: int, connections: int,
        rate: float | None = None, distinct: str = "", renew: str = "") -> dict[str, Any]:
    """Run wrk against ``base + path``; with ``rate``, pace connections to about that many requests/s.
    With ``distinct`` (a tag unique to the run), every request gets its own ``request_id``, so no two
    bodies are equal and no answer comes from the answer cache. With ``renew`` (a word without Lua
    pattern characters), every request has that word replaced by a value of its own."""
    delay = ""
    if rate:
        delay = f"function delay() return {max(0, round(connections / rate * 1000))} end"
    tag = f"{distinct or 'r'}-{time.time_ns()}"
    lua = _LUA % {"bodies": ", ".join(_lua_string(json.dumps(b)) for b in bodies), "path": path, "delay": delay,
                  "distinct": "true" if distinct else "false", "tag": tag,
                  "renew": _lua_string(renew)}
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(lua)
    try:
        out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "5s", "-s", script.name,
                              base], capture_output=True, text=True, timeout=seconds + 60, check=True).stdout
    finally:
        os.unlink(script.name)
    line = next(x for x in out.splitlines() if x.startswith("BENCH "))
    stats = json.loads(line.removeprefix("BENCH "))
    stats["rps"] = stats["requests"] / (stats["duration_us"] / 1e6)
    return stats


def _lua_string(text: str) -> str:
    level = "=" * 3
    while f"]{level}]" in text:
        level += "="
    return f"[{level}[{text}]{level}]"


def available() -> bool:
    """Whether wrk is installed."""
    return shutil.which("wrk") is not None
