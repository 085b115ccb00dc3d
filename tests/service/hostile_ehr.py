"""A hostile EHR FHIR server for the attacker's suite: the stub EHR (real HTTP on loopback) that
answers chosen paths with compression bombs, content codings covreq does not take, slow drips,
endless bodies and JSON nested past the parser's depth.

A bomb is cheap to build however far it expands: a deflate stream of zeros is a block of
1 MiB of zeros compressed once after a full flush (about 1 KiB) and repeated, since a full flush
leaves the compressor as it began; only the checksum of the trailer is computed over every byte.
One layer of deflate expands at most ~1,030 times, so a bomb of a few KB that expands to
gigabytes takes two layers (``stacked_bomb``); ``bomb`` of one layer is ~1 MB per GB.
"""
from __future__ import annotations

import functools
import gzip
import itertools
import json
import struct
import zlib
from dataclasses import dataclass, field
from typing import Any, Iterator

from ehr_stub import BASE_PATH, Reply, StubEhr

MIB = 1 << 20
_ZEROS = bytes(MIB)


@functools.cache
def _deflated_zeros(mebibytes: int) -> bytes:
    """A raw deflate stream of ``mebibytes`` MiB of zeros."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    block = compressor.compress(_ZEROS) + compressor.flush(zlib.Z_FULL_FLUSH)
    return block * mebibytes + compressor.flush()


@functools.cache
def bomb_body(decoded: int, coding: str = "gzip") -> bytes:
    """``decoded`` bytes of zeros (whole MiB) in one ``gzip`` or ``deflate`` (zlib) layer, with
    the right checksum and length, as a careful server would send them."""
    mebibytes = decoded // MIB
    stream, crc, adler = _deflated_zeros(mebibytes), 0, 1
    for _ in range(mebibytes):
        crc, adler = (zlib.crc32(_ZEROS, crc), adler) if coding == "gzip" else (crc, zlib.adler32(_ZEROS, adler))
    if coding == "gzip":
        return b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff" + stream + struct.pack("<II", crc, decoded & 0xFFFFFFFF)
    return b"\x78\xda" + stream + struct.pack(">I", adler)


def bomb(decoded: int, coding: str = "gzip") -> Reply:
    """A 200 whose one layer of ``coding`` expands to ``decoded`` bytes."""
    body = bomb_body(decoded, coding)
    return Reply(200, [body], {"Content-Type": "application/fhir+json", "Content-Encoding": coding,
                               "Content-Length": str(len(body))})


def stacked_bomb(decoded: int) -> Reply:
    """A 200 marked ``Content-Encoding: gzip, gzip``: a gzip'd gzip bomb, a few KB for gigabytes."""
    body = gzip.compress(bomb_body(decoded), 9)
    return Reply(200, [body], {"Content-Type": "application/fhir+json", "Content-Encoding": "gzip, gzip",
                               "Content-Length": str(len(body))})


def coded(coding: str, body: bytes = b'{"resourceType": "Patient", "id": "p1"}') -> Reply:
    """A 200 whose body is marked with ``coding`` (the body itself is plain JSON)."""
    return Reply(200, [body], {"Content-Type": "application/fhir+json", "Content-Encoding": coding,
                               "Content-Length": str(len(body))})


def served_as_is(resource: dict[str, Any]) -> Reply:
    """A 200 with ``resource`` as JSON, written once now, so that serving it costs the stub
    (which shares the tests' process) nothing but the socket's writes."""
    body = json.dumps(resource).encode()
    return Reply(200, [body], {"Content-Type": "application/fhir+json", "Content-Length": str(len(body))})


def drip(every: float = 0.1, seconds: float = 120.0) -> Reply:
    """A 200 that sends one byte of a valid start every ``every`` seconds for ``seconds``."""
    chunks = itertools.chain([b'{"resourceType": "Patient", "id": "p1", "text": "'],
                             itertools.repeat(b"x", int(seconds / every)))
    return Reply(200, chunks, {"Content-Type": "application/fhir+json"}, pause=every)


def endless(total: int = 1 << 40) -> Reply:
    """A 200 without Content-Length streaming ``total`` bytes (a TiB unless told) as fast as read."""
    def chunks() -> Iterator[bytes]:
        yield b'{"resourceType": "Patient", "id": "p1", "text": "'
        for _ in range(total // (64 * 1024)):
            yield b"x" * (64 * 1024)
    return Reply(200, chunks(), {"Content-Type": "application/fhir+json"})


def deep_json(depth: int = 200_000) -> Reply:
    """A 200 whose JSON nests ``depth`` lists deep inside a Patient, past any recursion limit."""
    body = b'{"resourceType": "Patient", "id": "p1", "x": ' + b"[" * depth + b"]" * depth + b"}"
    return Reply(200, [body], {"Content-Type": "application/fhir+json", "Content-Length": str(len(body))})


def nested_extensions(depth: int = 200) -> dict[str, Any]:
    """Patient/p1 whose name holds extensions nested ``depth`` deep: JSON the parser reads, past
    the depth the R4 models can check."""
    extension: dict[str, Any] = {"url": "http://example.org/x", "valueString": "x"}
    for _ in range(depth):
        extension = {"url": "http://example.org/x", "extension": [extension]}
    return {"resourceType": "Patient", "id": "p1", "name": [{"family": "X", "extension": [extension]}]}


@dataclass
class HostileEhr(StubEhr):
    """The stub EHR, with ``tricks``: ``Type/id`` or ``Type`` (a search) -> the hostile reply."""

    tricks: dict[str, Reply] = field(default_factory=dict)

    def reply(self, path: str, query: dict[str, list[str]]) -> Reply:
        trick = self.tricks.get(path.removeprefix(BASE_PATH + "/"))
        return trick if trick is not None else super().reply(path, query)
