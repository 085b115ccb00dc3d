"""The tables of covreq's database. A table is added by a new migration in ``migrations/versions``
(never by editing an applied one); this metadata mirrors what the migrations make."""
from __future__ import annotations

from sqlalchemy import JSON, Column, Date, DateTime, Float, ForeignKey, Index, Integer, MetaData, String, Table

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

#: Da Vinci PAS (service/pas/): one row per prior-authorization request as received. ``submission_key``
#: (a digest of the submitter's transaction identifier and the Claim identifiers) makes a resubmission
#: idempotent; ``due_at`` is the decision deadline (72 hours expedited, 7 days standard); ``status``
#: is ``pended`` while any item waits for a reviewer, ``complete`` once every item is decided.
pa_request = Table(
    "pa_request", metadata,
    Column("id", String(64), primary_key=True),
    Column("submission_key", String(64), nullable=False, unique=True),
    Column("pas_version", String(16), nullable=False),
    Column("payer", String(128)),
    Column("plan", String(128)),
    Column("member", String(256)),
    Column("claim_identifiers", JSON, nullable=False),
    Column("priority", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("due_at", DateTime(timezone=True), nullable=False),
    Column("decided_at", DateTime(timezone=True)),
    Column("ruleset", String(128), nullable=False),
    Column("request_bundle", JSON, nullable=False),
    Column("response_bundle", JSON, nullable=False),
    Column("extended_at", DateTime(timezone=True)),  # when a reviewer extended the review timeframe (pas_review)
    Index("ix_pa_request_member", "payer", "member"),
    Index("ix_pa_request_received", "received_at"),
    Index("ix_pa_request_open_due", "status", "due_at"),
)

#: One row per Claim item: its decision (``status`` certified, pended, not-required; a reviewer's
#: later decision updates it), the X12 review action code, who decided and when, the authorization
#: number and validity of a certified item, the documentation still owed and the rules' findings.
pa_item = Table(
    "pa_item", metadata,
    Column("request_id", String(64), ForeignKey("pa_request.id", ondelete="CASCADE"), primary_key=True),
    Column("sequence", Integer, primary_key=True),
    Column("code", String(64)),
    Column("system", String(16)),
    Column("date_of_service", Date),
    Column("place_of_service", String(8)),
    Column("status", String(16), nullable=False),
    Column("review_action", String(4), nullable=False),
    Column("decided_by", String(128)),
    Column("decided_at", DateTime(timezone=True)),
    Column("authorization_number", String(64)),
    Column("valid_from", Date),
    Column("valid_to", Date),
    Column("owed", JSON, nullable=False),
    Column("findings", JSON, nullable=False),
    # a reviewer's decision (migration pas_review): ``revision`` counts the item's decisions, so two
    # reviewers deciding the same item conflict; a denial's reason (X12 886 code) and policy; an
    # appeal of a denial and its outcome (``approved`` or ``upheld``)
    Column("revision", Integer, nullable=False, server_default="0"),
    Column("reason", String(2000)),
    Column("reason_code", String(8)),
    Column("policy_url", String(2048)),
    Column("quantity", Float),
    Column("appeal_filed_at", DateTime(timezone=True)),
    Column("appeal_outcome", String(16)),
    Column("appeal_decided_at", DateTime(timezone=True)),
    Index("ix_pa_item_status", "status"),
)

#: Authorizations on file: what later v1 and CRD answers for the same member and code find as
#: ``satisfied`` while the date of service falls in ``valid_from``..``valid_to``.
pa_authorization = Table(
    "pa_authorization", metadata,
    Column("number", String(64), primary_key=True),
    Column("request_id", String(64), ForeignKey("pa_request.id", ondelete="CASCADE"), nullable=False),
    Column("sequence", Integer, nullable=False),
    Column("payer", String(128), nullable=False),
    Column("member", String(256), nullable=False),
    Column("code", String(64), nullable=False),
    Column("valid_from", Date, nullable=False),
    Column("valid_to", Date, nullable=False),
    Column("issued_at", DateTime(timezone=True), nullable=False),
    Index("ix_pa_authorization_member_code", "payer", "member", "code"),
)
