"""API key hashes: the key file holds ``name: sha256:<64 hex digits>``, never a key.

``covreq hash-key`` writes such a line. SHA-256 rather than a slow password hash (scrypt,
argon2): an API key is a random token of at least 16 characters made by a machine (docs/operations.md
shows how), so a stolen hash cannot be reversed by guessing, however fast each guess; a slow hash
protects short human passwords only, and would cost every request tens of milliseconds of CPU,
which any caller could spend by sending made-up keys. This module has no web dependencies, so the
command line imports it cheaply.
"""
from __future__ import annotations

import hashlib
import re

PREFIX = "sha256:"
#: Shortest API key accepted by ``covreq hash-key``.
MIN_KEY_LENGTH = 16
_HASH = re.compile(r"sha256:[0-9a-f]{64}")
_KEY = re.compile(r"[!-~]+")  # printable ASCII without spaces: what an HTTP header carries intact


def digest(key: str) -> bytes:
    """The SHA-256 of a key as sent in the header: what the key file's hash stands for."""
    return hashlib.sha256(key.encode()).digest()


def hash_key(key: str) -> str:
    """The key file's form of ``key`` (``sha256:<hex>``); raises ValueError for a key too short or
    not one header-safe word."""
    if len(key) < MIN_KEY_LENGTH:
        raise ValueError(f"an API key must be at least {MIN_KEY_LENGTH} characters long, not {len(key)}")
    if not _KEY.fullmatch(key):
        raise ValueError("an API key is printable ASCII without spaces (it travels in an HTTP header)")
    return PREFIX + digest(key).hex()


def parse_hash(name: str, value: object) -> bytes:
    """The digest a key file's entry holds; raises ValueError saying what to do when the entry is
    not a hash (a key in plain text is refused, never hashed at load)."""
    if isinstance(value, str) and _HASH.fullmatch(value):
        return bytes.fromhex(value.removeprefix(PREFIX))
    if isinstance(value, str) and not value.startswith(PREFIX):
        raise ValueError(f"key {name!r} is not a hash: the file holds each key's hash, never the key; "
                         f"replace it with the line `covreq hash-key {name}` prints (the key on standard input)")
    raise ValueError(f"key {name!r} must be {PREFIX}<64 lower-case hex digits> (`covreq hash-key` makes it)")
