"""Registered bundles: `models register` marks the bundle versions whose results the sink
stores; a result naming any other version is dead-lettered, so a forged or misconfigured
producer cannot put rows in (or ahead of) the real ones.

Bundles that already produced stored results are registered by this upgrade, so a
running deployment keeps storing its worker's results across it.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("models", sa.Column("registered_at", sa.TIMESTAMP(timezone=True)))
    op.add_column("models", sa.Column("location", sa.Text()))
    op.execute("UPDATE models SET registered_at = first_used WHERE registered_at IS NULL")
    # A bundle is registered before it produced anything.
    op.alter_column("models", "first_used", nullable=True)
    op.alter_column("models", "last_used", nullable=True)


def downgrade() -> None:
    op.execute("DELETE FROM models WHERE first_used IS NULL")
    op.alter_column("models", "first_used", nullable=False)
    op.alter_column("models", "last_used", nullable=False)
    op.drop_column("models", "location")
    op.drop_column("models", "registered_at")
