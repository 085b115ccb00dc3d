"""Da Vinci PAS: prior-authorization requests, their items with each decision, and the
authorizations on file (CMS-0057-F part 3).

Revision ID: pas_core
Revises: 0001
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "pas_core"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pa_request",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("submission_key", sa.String(64), nullable=False, unique=True),
        sa.Column("pas_version", sa.String(16), nullable=False),
        sa.Column("payer", sa.String(128)),
        sa.Column("plan", sa.String(128)),
        sa.Column("member", sa.String(256)),
        sa.Column("claim_identifiers", sa.JSON, nullable=False),
        sa.Column("priority", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True)),
        sa.Column("ruleset", sa.String(128), nullable=False),
        sa.Column("request_bundle", sa.JSON, nullable=False),
        sa.Column("response_bundle", sa.JSON, nullable=False),
    )
    op.create_index("ix_pa_request_member", "pa_request", ["payer", "member"])
    op.create_index("ix_pa_request_open_due", "pa_request", ["status", "due_at"])
    op.create_table(
        "pa_item",
        sa.Column("request_id", sa.String(64), sa.ForeignKey("pa_request.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("sequence", sa.Integer, primary_key=True),
        sa.Column("code", sa.String(64)),
        sa.Column("system", sa.String(16)),
        sa.Column("date_of_service", sa.Date),
        sa.Column("place_of_service", sa.String(8)),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("review_action", sa.String(4), nullable=False),
        sa.Column("decided_by", sa.String(128)),
        sa.Column("decided_at", sa.DateTime(timezone=True)),
        sa.Column("authorization_number", sa.String(64)),
        sa.Column("valid_from", sa.Date),
        sa.Column("valid_to", sa.Date),
        sa.Column("owed", sa.JSON, nullable=False),
        sa.Column("findings", sa.JSON, nullable=False),
    )
    op.create_index("ix_pa_item_status", "pa_item", ["status"])
    op.create_table(
        "pa_authorization",
        sa.Column("number", sa.String(64), primary_key=True),
        sa.Column("request_id", sa.String(64), sa.ForeignKey("pa_request.id", ondelete="CASCADE"), nullable=False),
        sa.Column("sequence", sa.Integer, nullable=False),
        sa.Column("payer", sa.String(128), nullable=False),
        sa.Column("member", sa.String(256), nullable=False),
        sa.Column("code", sa.String(64), nullable=False),
        sa.Column("valid_from", sa.Date, nullable=False),
        sa.Column("valid_to", sa.Date, nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_pa_authorization_member_code", "pa_authorization", ["payer", "member", "code"])


def downgrade() -> None:
    op.drop_index("ix_pa_authorization_member_code", "pa_authorization")
    op.drop_table("pa_authorization")
    op.drop_index("ix_pa_item_status", "pa_item")
    op.drop_table("pa_item")
    op.drop_index("ix_pa_request_open_due", "pa_request")
    op.drop_index("ix_pa_request_member", "pa_request")
    op.drop_table("pa_request")
