"""A bundle server on loopback (real HTTP) that serves good bundles and hostile ones: stacked and
bombing Content-Encodings, tar bombs (a huge member, GNU long-name and pax headers declaring GiBs),
non-ASCII ETags and bundles that cannot be unpacked. The bombs are cheap: a few hundred KB of gzip
that would decode to what they declare; nothing here allocates what a bomb declares."""
from __future__ import annotations

import functools
import hashlib
import json
import tarfile
import threading
import time
import zlib
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator

import pytest

from engine.loading.bundle import FORMAT, MANIFEST, TREE, covreq_version
from engine.loading.files import named_digest_entry

MIB = 1024 * 1024


@dataclass
class Offer:
    """What the server answers: a body with its ETag (None: none sent, as some object stores), an
    HTTP status, a pause between 256-byte chunks, more headers (e.g. ``Content-Encoding``), and a
    ``Last-Modified`` date (honoured in ``If-Modified-Since``)."""

    body: bytes
    etag: str | None
    status: int = 200
    pause: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    last_modified: str | None = None


class BundleServer(ThreadingHTTPServer):
    """Serves ``offer`` at any path, honours If-None-Match and If-Modified-Since, records each
    request's If-None-Match (``asked``) and all its headers (``requests``); with ``required`` set,
    a request without those headers gets 401, as a private object store answers."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.offer = Offer(b"", '"none"', 404)
        self.asked: list[str | None] = []
        self.requests: list[dict[str, str]] = []
        self.required: dict[str, str] = {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/bundles/rules.tar.gz"


class _Handler(BaseHTTPRequestHandler):
    server: BundleServer

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        offer = self.server.offer
        self.server.asked.append(self.headers.get("If-None-Match"))
        self.server.requests.append(dict(self.headers.items()))
        if any(self.headers.get(name) != value for name, value in self.server.required.items()):
            self.send_response(401)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if offer.status == 200 and offer.etag is not None and self.headers.get("If-None-Match") == offer.etag or (
                offer.status == 200 and offer.last_modified is not None and "If-None-Match" not in self.headers
                and self.headers.get("If-Modified-Since") == offer.last_modified):
            self.send_response(304)
            if offer.etag is not None:
                self.send_header("ETag", offer.etag)  # a str: sent as Latin-1, as a hostile server may
            self.end_headers()
            return
        self.send_response(offer.status)
        if offer.etag is not None:
            self.send_header("ETag", offer.etag)
        if offer.last_modified is not None:
            self.send_header("Last-Modified", offer.last_modified)
        self.send_header("Content-Length", str(len(offer.body)))
        for name, value in offer.headers.items():
            self.send_header(name, value)
        self.end_headers()
        step = 256 if offer.pause else len(offer.body) or 1
        try:
            for start in range(0, len(offer.body), step):
                self.wfile.write(offer.body[start:start + step])
                self.wfile.flush()
                time.sleep(offer.pause)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up: a slow download, or a bomb refused half way

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture()
def server() -> Iterator[BundleServer]:
    """A bundle server running on loopback for one test."""
    running = BundleServer()
    thread = threading.Thread(target=running.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield running
    running.shutdown()
    running.server_close()


class Gzip:
    """A gzip stream written piece by piece; runs of zeros are compressed without being allocated."""

    def __init__(self) -> None:
        self._zip = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
        self._out: list[bytes] = []

    def add(self, data: bytes) -> Gzip:
        self._out.append(self._zip.compress(data))
        return self

    def zeros(self, size: int) -> Gzip:
        block = bytes(min(size, MIB))
        for start in range(0, size, MIB):
            self.add(block[:min(MIB, size - start)])
        return self

    def done(self) -> bytes:
        return b"".join(self._out) + self._zip.flush()


@functools.lru_cache(maxsize=None)
def zeros_gz(size: int) -> bytes:
    """``size`` zero bytes, gzip'd (about a thousandth of ``size``)."""
    return Gzip().zeros(size).done()


def header(name: str, size: int, kind: bytes = tarfile.REGTYPE, fmt: int = tarfile.USTAR_FORMAT) -> bytes:
    """One 512-byte tar header declaring ``size`` bytes, whatever follows it."""
    info = tarfile.TarInfo(name)
    info.size, info.type, info.mode = size, kind, 0o644
    return info.tobuf(format=fmt)


def padded(data: bytes) -> bytes:
    return data + bytes(-len(data) % tarfile.BLOCKSIZE)


def manifest_of(files: list[tuple[str, bytes]]) -> bytes:
    """A manifest whose digest matches ``files`` (paths inside ``rules/``), unsigned as anyone can make."""
    digest = hashlib.sha256()
    for name, raw in files:
        digest.update(named_digest_entry(name, raw))
    return json.dumps({"digest": digest.hexdigest(), "covreq": covreq_version(), "files": len(files),
                       "format": FORMAT}).encode()


def forged(files: list[tuple[str, bytes]]) -> bytes:
    """An unsigned bundle of ``files`` in this order, with a manifest that matches them."""
    stream = Gzip()
    for name, raw in [(MANIFEST, manifest_of(files))] + [(f"{TREE}/{n}", r) for n, r in files]:
        stream.add(header(name, len(raw)) + padded(raw))
    return stream.add(bytes(2 * tarfile.BLOCKSIZE)).done()


def huge_member(size: int) -> bytes:
    """A bundle whose first rule file declares, and holds, ``size`` zero bytes."""
    manifest = manifest_of([])
    stream = Gzip().add(header(MANIFEST, len(manifest)) + padded(manifest) + header(f"{TREE}/acme/huge.yaml", size))
    return stream.zeros(size).add(bytes(2 * tarfile.BLOCKSIZE)).done()


def huge_header(kind: bytes, declared: int, present: int) -> bytes:
    """A bundle starting with a GNU long-name (``tarfile.GNUTYPE_LONGNAME``) or pax (``tarfile.XHDTYPE``)
    header that declares ``declared`` bytes, followed by ``present`` zero bytes."""
    return Gzip().add(header("././@LongLink", declared, kind, tarfile.GNU_FORMAT)).zeros(present).done()


def stacked(size: int) -> bytes:
    """``size`` zero bytes gzip'd twice: served as ``Content-Encoding: gzip, gzip``."""
    return Gzip().add(zeros_gz(size)).done()
