"""The tables of covreq's database. A table is added by a new migration in ``migrations/versions``
(never by editing an applied one); this metadata mirrors what the migrations make."""
from __future__ import annotations

from sqlalchemy import Column, Float, Index, MetaData, String, Table

metadata = MetaData()

#: Longest ``iss`` (or other scope of a ``jti``) and ``jti`` kept, in characters; longer ones are refused
#: before they reach the database (service/auth.py bounds claims tighter still).
MAX_KEY_CHARS = 512

#: Single-use token ids: a row per (issuer, jti) once used, kept until ``expires_at`` (Unix seconds),
#: after which the token could not be accepted anyway and the row is purged.
jwt_replay = Table(
    "jwt_replay", metadata,
    Column("issuer", String(MAX_KEY_CHARS), primary_key=True),
    Column("jti", String(MAX_KEY_CHARS), primary_key=True),
    Column("expires_at", Float, nullable=False),
    Index("ix_jwt_replay_expires_at", "expires_at"),
)
