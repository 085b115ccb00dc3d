"""Engine changes keep every decision byte for byte: the corpus of bench/corpus.py is answered again
and compared with the answers recorded before (``python -m bench.corpus`` records them anew when a
change of decisions is intended)."""
from __future__ import annotations

import gzip
import json

import pytest

from bench.corpus import RECORDED, answers


@pytest.mark.parametrize("warm", [False, True], ids=["first-sight", "templates-warm"])
def test_every_corpus_answer_is_byte_identical_to_the_recorded_one(warm: bool) -> None:
    with gzip.open(RECORDED, "rt", encoding="utf-8") as recorded:
        expected = [json.loads(line) for line in recorded]
    actual = list(answers(warm))
    assert len(actual) == len(expected) > 2000
    for want, (name, request, answer) in zip(expected, actual):
        assert (name, request) == (want["corpus"], want["request"])
        assert answer == want["answer"], f"{name} request {json.dumps(request)} answers differently"
