"""What rate limiting and tracing add to a request: ``.venv/bin/python -m bench.edge``.

The same v1 request (answered from the rule set's answer cache, covreq's fastest decision) is sent
through the ASGI app (no socket) many times, with each setting off and on: no limit and no
collector (the defaults), ``COVREQ_RATE_LIMIT`` high enough never to refuse, and spans sent to a
collector stub on loopback (needs covreq[otel]), each span or one in ten. The fastest of several
rounds is printed, per call (the rounds of the runs taken in turn); the exporter encodes and sends the
spans in a thread of the same process, and that work is counted too (each round ends by flushing
its spans).
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import tempfile
import threading
import time
import timeit
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson

from service import Settings, create_app

RULES = Path(__file__).resolve().parent.parent / "tests" / "service" / "fixtures" / "rules"
PAYERS = RULES.parent / "payers.yaml"
BODY = orjson.dumps({"payer": "acme", "place_of_service": "22", "services": [{"code": "15823"}, {"code": "77061"}]})


class _Sink(BaseHTTPRequestHandler):
    """A collector that takes every OTLP POST and answers 200."""

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


async def _calls(app: Any, count: int) -> float:
    """Seconds per call of ``count`` calls of POST /v1/requirements."""
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/v1/requirements", "raw_path": b"/v1/requirements", "root_path": "", "query_string": b"",
             "headers": [(b"host", b"127.0.0.1"), (b"content-type", b"application/json"),
                         (b"content-length", str(len(BODY)).encode())],
             "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000)}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": BODY, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            assert message["status"] == 200, message

    tracing = app.state.tracing
    began = time.perf_counter()
    for _ in range(count):
        await app(dict(scope, state={}), receive, send)
    if tracing is not None:  # the spans' encoding and sending is part of their cost
        tracing.flush()
    return (time.perf_counter() - began) / count


async def _measure(runs: dict[str, tuple[Settings, dict[str, str]]], calls: int, rounds: int) -> dict[str, float]:
    """The fastest round's seconds per call of each run, the apps started (lifespan) as a server
    would (each with its ``env`` set while it starts), their rounds taken in turn so that the
    machine's other load falls on all alike."""
    async with contextlib.AsyncExitStack() as stack:
        apps = {}
        for name, (settings, env) in runs.items():
            saved = {key: os.environ.get(key) for key in env}
            os.environ.update(env)
            try:
                apps[name] = app = create_app(str(RULES), settings)
                await stack.enter_async_context(app.router.lifespan_context(app))
            finally:
                for key, value in saved.items():
                    os.environ.pop(key, None) if value is None else os.environ.__setitem__(key, value)
            await _calls(app, calls)  # warm: caches, first-use compilation
        best = {name: float("inf") for name in runs}
        for turn in range(rounds):
            order = list(apps)
            for name in order[turn % len(order):] + order[:turn % len(order)]:  # each run first in turn
                best[name] = min(best[name], await _calls(apps[name], calls))
        return best


def components(repeat: int = 9, number: int = 1000) -> dict[str, float]:
    """Seconds per request of each piece alone (the fastest of ``repeat`` runs of ``number``): the
    rate-limit middleware (less the app it wraps, which does nothing), what tracing adds to the
    access log's observer when off and when on (a span made and queued), and the exporter's work
    for one span (encoding it and POSTing it with the others to a collector stub)."""
    from service.app import _observer
    from service.ratelimit import RateLimit, limiter_from

    async def nothing(scope: Any, receive: Any, send: Any) -> None:
        pass

    limited = RateLimit(nothing, limiter_from("1000000000/s", None), refuse=None, counted=None)  # type: ignore[arg-type]
    scope = {"type": "http", "method": "POST", "path": "/v1/requirements", "client": ("127.0.0.1", 50000),
             "state": {}, "headers": []}

    def per_call(run: Any, setup: Any = lambda: None) -> float:
        return min(timeit.repeat(run, setup=setup, number=number, repeat=repeat)) / number

    async def loop(app: Any) -> None:
        for _ in range(number):
            await app(scope, None, None)

    def through(app: Any) -> float:
        return min(timeit.repeat(lambda: asyncio.run(loop(app)), number=1, repeat=repeat)) / number

    figures = {"rate limit middleware": through(limited) - through(nothing)}
    sink = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    with tempfile.TemporaryDirectory() as work:
        base = {"payers": PAYERS, "audit_path": Path(work) / "audit.jsonl"}
        off = create_app(str(RULES), Settings(**base))
        on = create_app(str(RULES), Settings(**base, otlp_endpoint=f"http://127.0.0.1:{sink.server_address[1]}"))
        tracing = on.state.tracing
        tracing.start()
        seen = {**scope, "route": off.router.routes[-1], "path_params": {}}
        observe, metrics, holder = _observer(off), off.state.metrics, off.state.holder
        figures["tracing off (observer less the metrics)"] = (
            per_call(lambda: observe(seen, 200, 0.001, "digest"))
            - per_call(lambda: metrics.observe_request(seen, 200, 0.001, holder.current)))
        figures["tracing on: span made and queued"] = per_call(lambda: tracing.record(seen, 200, 0.001, "digest"),
                                                               setup=tracing.flush)
        sends = []
        for _ in range(repeat):
            for _ in range(number):
                tracing.record(seen, 200, 0.001, "digest")
            began = time.perf_counter()
            tracing.flush()
            sends.append((time.perf_counter() - began) / number)
        figures["tracing on: span encoded and sent (exporter)"] = min(sends)
        tracing.stop()
    sink.shutdown()
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args(argv)
    sink = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    with tempfile.TemporaryDirectory() as work:
        base = {"payers": PAYERS, "audit_path": Path(work) / "audit.jsonl"}
        traced = Settings(**base, otlp_endpoint=f"http://127.0.0.1:{sink.server_address[1]}")
        sampled = {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.1"}
        runs = {"defaults (no limit, no collector)": (Settings(**base), {}),
                "rate limit on": (Settings(**base, rate_limit="1000000000/s"), {}),
                "tracing on, every request": (traced, {}),
                "tracing on, 1 request in 10 sampled": (traced, sampled)}
        results = asyncio.run(_measure(runs, args.calls, args.rounds))
    sink.shutdown()
    plain = results["defaults (no limit, no collector)"]
    print("a whole v1 call through the ASGI app:")
    for name, seconds in results.items():
        print(f"  {name:44} {seconds * 1e6:8.1f} µs ({(seconds - plain) * 1e6:+.1f} µs)")
    print("each piece alone, per request:")
    for name, seconds in components().items():
        print(f"  {name:44} {seconds * 1e6:8.2f} µs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
