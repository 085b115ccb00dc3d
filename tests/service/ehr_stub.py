"""A stub EHR FHIR server for the tests: R4 REST reads and searches over real HTTP on loopback,
recording every request with its bearer token."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from typing import Any, Iterable
from urllib.parse import parse_qs, urlsplit

import loopback

BASE_PATH = "/fhir"


@dataclass
class Seen:
    """One request the stub answered."""

    path: str
    query: dict[str, list[str]]
    authorization: str | None
    started: float = 0.0   # time.monotonic() when the request arrived
    finished: float = 0.0  # and when its answer was written
    accept_encoding: str | None = None


@dataclass
class Reply:
    """An answer as written on the wire: status, headers, and the body in chunks, each written
    ``pause`` seconds after the last; without a Content-Length header the body ends when the
    connection closes."""

    status: int
    chunks: Iterable[bytes]
    headers: dict[str, str] = field(default_factory=dict)
    pause: float = 0.0


@dataclass
class StubEhr:
    """Resources by ``Type/id``; ``broken`` maps ``Type/id`` or ``Type`` (a search) to an HTTP status,
    ``slow`` to seconds of delay, ``huge`` to a body size in bytes."""

    resources: dict[str, dict[str, Any]] = field(default_factory=dict)
    broken: dict[str, int] = field(default_factory=dict)
    slow: dict[str, float] = field(default_factory=dict)
    huge: dict[str, int] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)
    url: str = ""

    def hold(self, *resources: dict[str, Any]) -> None:
        """Keep resources (or the entries of searchset Bundles) on the server."""
        for resource in resources:
            for item in [e["resource"] for e in resource.get("entry", [])] if resource["resourceType"] == "Bundle" \
                    else [resource]:
                self.resources[f"{item['resourceType']}/{item['id']}"] = item

    def answer(self, path: str, query: dict[str, list[str]]) -> tuple[int, bytes]:
        """The status and body for a GET of ``path`` under the base."""
        target = path.removeprefix(BASE_PATH + "/")
        if target in self.slow:
            time.sleep(self.slow[target])
        if target in self.broken:
            return self.broken[target], b'{"resourceType": "OperationOutcome"}'
        if target in self.huge:
            return 200, json.dumps({"resourceType": "Basic", "id": "x", "text": "x" * self.huge[target]}).encode()
        if "/" in target:
            found = self.resources.get(target)
            return (200, json.dumps(found).encode()) if found else (404, b'{"resourceType": "OperationOutcome"}')
        matches = [r for key, r in self.resources.items() if key.split("/")[0] == target and _matches(r, query)]
        bundle = {"resourceType": "Bundle", "type": "searchset", "total": len(matches),
                  "entry": [{"resource": r, "search": {"mode": "match"}} for r in matches]}
        return 200, json.dumps(bundle).encode()

    def reply(self, path: str, query: dict[str, list[str]]) -> Reply:
        """The answer to a GET of ``path``: :meth:`answer` as FHIR JSON with its length."""
        status, body = self.answer(path, query)
        return Reply(status, [body], {"Content-Type": "application/fhir+json", "Content-Length": str(len(body))})

    def tokens(self) -> set[str | None]:
        """The Authorization headers of every request seen."""
        return {s.authorization for s in self.seen}

    def paths(self) -> list[str]:
        """The paths asked for, under the base, in order."""
        return [s.path.removeprefix(BASE_PATH + "/") for s in self.seen]


def _matches(resource: dict[str, Any], query: dict[str, list[str]]) -> bool:
    """The search parameters the stub understands: patient and status."""
    patient = query.get("patient", [None])[0]
    if patient is not None:
        subject = (resource.get("beneficiary") or resource.get("subject") or resource.get("patient") or {})
        if not str(subject.get("reference", "")).endswith(f"Patient/{patient}"):
            return False
    status = query.get("status", [None])[0]
    return status is None or resource.get("status") == status


def serve(stub: StubEhr) -> ThreadingHTTPServer:
    """Start the stub on 127.0.0.1 on a free port (``stub.url`` is its FHIR base); shut it down after."""
    class Handler(loopback.QuietHandler):
        def do_GET(self) -> None:  # noqa: N802 - the http.server hook's name
            parts = urlsplit(self.path)
            query = parse_qs(parts.query)
            seen = Seen(parts.path, query, self.headers.get("Authorization"), time.monotonic(),
                        accept_encoding=self.headers.get("Accept-Encoding"))
            stub.seen.append(seen)
            reply = stub.reply(parts.path, query)
            try:
                self.send_response(reply.status)
                for name, text in reply.headers.items():
                    self.send_header(name, text)
                self.end_headers()
                for number, chunk in enumerate(reply.chunks):
                    if number and reply.pause:
                        time.sleep(reply.pause)
                    self.wfile.write(chunk)
                    self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                pass  # covreq gave up waiting (timeouts, size limits): that is what was tested
            seen.finished = time.monotonic()

    server = loopback.start(Handler)
    stub.url = f"{loopback.origin(server)}{BASE_PATH}"
    return server
