"""Notifications: one row per event the notifier sends (claimed before sending, marked
sent after), so an event is sent once across restarts and redeliveries, and its
de-duplication and rate limits survive a restart.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TIME = sa.TIMESTAMP(timezone=True)


def upgrade() -> None:
    op.create_table(
        "notifications",
        sa.Column("event_id", sa.Text(), primary_key=True),
        sa.Column("rule", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("station_id", sa.Text(), nullable=False),
        sa.Column("species", sa.Text(), nullable=True),
        sa.Column("dedup_key", sa.Text(), nullable=False),
        sa.Column("event_time", _TIME, nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("targets", ARRAY(sa.Text()), nullable=False),
        sa.Column("claimed_at", _TIME, server_default=sa.func.now(), nullable=False),
        sa.Column("sent_at", _TIME, nullable=True),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.CheckConstraint("kind IN ('detection', 'silent', 'drift_alert')",
                           name="ck_notifications_kind"),
    )
    op.create_index("ix_notifications_rule_event_time", "notifications", ["rule", "event_time"])
    op.create_index("ix_notifications_pending", "notifications", ["claimed_at"],
                    postgresql_where=sa.text("sent_at IS NULL"))


def downgrade() -> None:
    op.drop_table("notifications")
