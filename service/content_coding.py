"""HTTP content codings that covreq decodes itself, a bounded step at a time, so that a compressed
body costs what is kept of it and never its expanded size: one layer of gzip or deflate, or none.
Stacked codings (``gzip, gzip``: a bomb of bombs) and unknown ones are refused before a byte is
decoded. Used for the EHR's answers (service/ehr_client.py) and bundle downloads (service/bundles.py).
"""
from __future__ import annotations

import zlib
from typing import Any, Iterable, Iterator

#: The codings covreq decodes, with their zlib ``wbits``.
CODINGS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


class CodingError(ValueError):
    """A body whose coding is refused, or whose compressed data is damaged; says which."""


def decoder(values: Iterable[str], accepted: Iterable[str] = CODINGS) -> Any:
    """A zlib decompressor for the ``Content-Encoding`` header ``values``, None for none
    (``identity``); raises CodingError for stacked codings and for any not ``accepted``."""
    codings = [c for c in (c.strip().lower() for value in values for c in value.split(",")) if c not in ("", "identity")]
    if len(codings) > 1:
        raise CodingError(f"stacked content codings are refused ({len(codings)} layers)")
    if codings and codings[0] not in set(accepted) & set(CODINGS):
        raise CodingError(f"the content coding {codings[0][:32]!r} is refused (only {', '.join(accepted)})")
    return zlib.decompressobj(CODINGS[codings[0]]) if codings else None


def inflate(decompressor: Any, data: bytes, step: int) -> Iterator[bytes]:
    """What ``data`` decodes to, in pieces of at most ``step`` bytes, each made only when the
    caller asks for it (a bomb is stopped by a caller that stops asking); raises CodingError for
    damaged data and for data after the compressed body's end."""
    try:
        while True:
            piece = decompressor.decompress(data, step)
            data = decompressor.unconsumed_tail
            if decompressor.unused_data:
                raise CodingError("the body holds data after its compressed body")
            yield piece
            if not data and len(piece) < step:  # all the output of this input is out
                return
    except zlib.error as err:
        raise CodingError(f"the compressed body is corrupt ({err})") from None


def finish(decompressor: Any) -> None:
    """Raise CodingError when the compressed body ended early (its end was never decoded)."""
    if not decompressor.eof:
        raise CodingError("the compressed body ends early")
