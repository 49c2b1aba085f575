"""Kept clips, human reviews and the web app's accounts: the audio of chunks worth
listening to (the clip keeper writes the file and a row; eviction marks the row, it
never deletes it), the verdicts people give on detections in the web app, kept apart
from the model's rows, and who may give them (argon2 password hashes).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import UUID

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TIME = sa.TIMESTAMP(timezone=True)


def upgrade() -> None:
    # A detection's page is addressed by its chunk id alone; the key leads with time.
    op.create_index("ix_chunks_chunk_id", "chunks", ["chunk_id"])
    op.create_table(
        "clips",
        sa.Column("chunk_id", UUID(as_uuid=True), primary_key=True),
        sa.Column("chunk_start", _TIME, nullable=False),
        sa.Column("station_id", sa.Text(), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("codec", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("top_label", sa.Text(), nullable=False),
        sa.Column("top_probability", sa.REAL(), nullable=False),
        sa.Column("kept_at", _TIME, server_default=sa.func.now(), nullable=False),
        sa.Column("evicted_at", _TIME, nullable=True),
        sa.CheckConstraint("reason IN ('detection', 'negative')", name="ck_clips_reason"),
        sa.CheckConstraint("bytes >= 0", name="ck_clips_bytes"),
    )
    op.create_index("ix_clips_station_id_chunk_start", "clips", ["station_id", "chunk_start"])
    op.create_index("ix_clips_kept_at_live", "clips", ["kept_at"],
                    postgresql_where=sa.text("evicted_at IS NULL"))
    op.create_table(
        "reviews",
        sa.Column("review_id", sa.BigInteger(), sa.Identity(), primary_key=True),
        sa.Column("chunk_id", UUID(as_uuid=True), nullable=False),
        sa.Column("chunk_start", _TIME, nullable=False),
        sa.Column("label", sa.Text(), nullable=False),
        sa.Column("verdict", sa.Text(), nullable=False),
        sa.Column("new_label", sa.Text(), nullable=True),
        sa.Column("reviewer", sa.Text(), nullable=False),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("created_at", _TIME, server_default=sa.func.now(), nullable=False),
        sa.CheckConstraint("verdict IN ('confirm', 'reject', 'relabel')",
                           name="ck_reviews_verdict"),
        sa.CheckConstraint("(verdict = 'relabel') = (new_label IS NOT NULL)",
                           name="ck_reviews_new_label"),
    )
    op.create_index("ix_reviews_chunk_id", "reviews", ["chunk_id"])
    op.create_index("ix_reviews_created_at", "reviews", ["created_at"])
    op.create_table(
        "web_users",
        sa.Column("username", sa.Text(), primary_key=True),
        sa.Column("password_hash", sa.Text(), nullable=False),
        sa.Column("role", sa.Text(), nullable=False),
        sa.Column("created_at", _TIME, server_default=sa.func.now(), nullable=False),
        sa.Column("disabled_at", _TIME, nullable=True),
        sa.CheckConstraint("role IN ('reviewer', 'admin')", name="ck_web_users_role"),
    )


def downgrade() -> None:
    op.drop_table("web_users")
    op.drop_index("ix_chunks_chunk_id", "chunks")
    op.drop_table("reviews")
    op.drop_table("clips")
