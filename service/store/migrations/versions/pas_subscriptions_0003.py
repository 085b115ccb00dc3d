"""Da Vinci PAS subscriptions (R4 Subscriptions Backport): each subscription with its rest-hook
channel, events count and owner (the caller who made it), and the submitter organization identifiers it filters on.

Revision ID: pas_subscriptions
Revises: pas_core
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "pas_subscriptions"
down_revision = "pas_core"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pas_subscription",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("endpoint", sa.String(2048), nullable=False),
        sa.Column("payload", sa.String(32), nullable=False),
        sa.Column("content", sa.String(16), nullable=False),
        sa.Column("headers", sa.Text, nullable=False),
        sa.Column("heartbeat", sa.Integer),
        sa.Column("end_at", sa.Float),
        sa.Column("base", sa.String(2048), nullable=False),
        sa.Column("resource", sa.Text, nullable=False),
        sa.Column("events", sa.Integer, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("last_sent_at", sa.Float),
        sa.Column("last_error", sa.String(200)),
        sa.Column("owner", sa.String(512), nullable=False),
    )
    op.create_table(
        "pas_subscription_org",
        sa.Column("org", sa.String(256), primary_key=True),
        sa.Column("subscription_id", sa.String(36), sa.ForeignKey("pas_subscription.id", ondelete="CASCADE"),
                  primary_key=True),
    )
    op.create_index("ix_pas_subscription_org_subscription", "pas_subscription_org", ["subscription_id"])


def downgrade() -> None:
    op.drop_index("ix_pas_subscription_org_subscription", "pas_subscription_org")
    op.drop_table("pas_subscription_org")
    op.drop_table("pas_subscription")
