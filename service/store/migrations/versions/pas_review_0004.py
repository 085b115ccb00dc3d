"""Da Vinci PAS reviewers: each item's reviewer decision (denial reason and policy, modified quantity,
a revision that makes two reviewers' concurrent decisions on one item conflict), its appeal and
outcome, and the request's extended review timeframe (CMS-0057-F's metrics count these).

Revision ID: pas_review
Revises: pas_subscriptions
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "pas_review"
down_revision = "pas_subscriptions"
branch_labels = None
depends_on = None

def _item_columns() -> tuple[sa.Column, ...]:  # type: ignore[type-arg]
    """The columns added to ``pa_item`` (made anew for each use: a Column belongs to one table)."""
    return (
        sa.Column("revision", sa.Integer, nullable=False, server_default="0"),
        sa.Column("reason", sa.String(2000)),
        sa.Column("reason_code", sa.String(8)),
        sa.Column("policy_url", sa.String(2048)),
        sa.Column("quantity", sa.Float),
        sa.Column("appeal_filed_at", sa.DateTime(timezone=True)),
        sa.Column("appeal_outcome", sa.String(16)),
        sa.Column("appeal_decided_at", sa.DateTime(timezone=True)),
    )


def upgrade() -> None:
    with op.batch_alter_table("pa_item") as batch:
        for column in _item_columns():
            batch.add_column(column)
    with op.batch_alter_table("pa_request") as batch:
        batch.add_column(sa.Column("extended_at", sa.DateTime(timezone=True)))
    op.create_index("ix_pa_request_received", "pa_request", ["received_at"])


def downgrade() -> None:
    op.drop_index("ix_pa_request_received", "pa_request")
    with op.batch_alter_table("pa_request") as batch:
        batch.drop_column("extended_at")
    with op.batch_alter_table("pa_item") as batch:
        for column in reversed(_item_columns()):
            batch.drop_column(column.name)
