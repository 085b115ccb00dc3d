"""orjson reads request bodies and writes responses: the same values in, the same bytes out as the
standard library (floats, which covreq's answers do not carry, in their shortest spelling), which
still reads what orjson refuses so that problems are worded as before."""
from __future__ import annotations

import gzip
import json
from itertools import islice

import pytest
from fastapi.responses import JSONResponse

from bench.corpus import RECORDED
from service.responses import FastJSONResponse
from service.v1 import BodyError, parse_json


def _corpus(count: int) -> list[dict]:  # type: ignore[type-arg]
    with gzip.open(RECORDED, "rt", encoding="utf-8") as recorded:
        return [json.loads(line) for line in islice(recorded, count)]


def test_responses_are_byte_identical_to_the_standard_library_ones() -> None:
    for entry in _corpus(400):
        answer = json.loads(entry["answer"])
        assert FastJSONResponse(answer).body == JSONResponse(answer).body
    odd = {"text": "Médicaid – 😀 \u2028 \"\\ \x00", "n": [1, -0.5, True, None], "deep": [[[{}]]]}
    assert FastJSONResponse(odd).body == JSONResponse(odd).body


def test_floats_keep_their_value_in_the_shortest_spelling() -> None:
    numbers = [1e-7, 1e16, 0.1, 2.5e300]
    assert json.loads(FastJSONResponse(numbers).body) == numbers


def test_a_body_orjson_cannot_write_is_written_by_the_standard_library() -> None:
    assert FastJSONResponse({1: "non-string key"}).body == JSONResponse({1: "non-string key"}).body


def test_request_bodies_are_read_as_the_standard_library_reads_them() -> None:
    for entry in _corpus(400):
        raw = json.dumps(entry["request"], ensure_ascii=False).encode()
        assert parse_json(raw) == json.loads(raw)


def test_integers_beyond_64_bits_stay_exact_integers() -> None:
    assert parse_json(b'{"units": 123456789012345678901234567890}') == {"units": 123456789012345678901234567890}


@pytest.mark.parametrize("raw, message", [
    (b'{"a": NaN}', "NaN is not valid JSON"), (b'{"a": 1,}', "Expecting property name enclosed in double quotes"),
    (b"\xff", "invalid start byte"), (b"[" * 100_000, "the JSON nests too deeply"),
])
def test_bodies_orjson_refuses_get_the_standard_library_message(raw: bytes, message: str) -> None:
    with pytest.raises(BodyError, match=message):
        parse_json(raw)
