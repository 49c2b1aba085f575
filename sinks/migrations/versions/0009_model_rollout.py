"""Model rollout: which registered bundle is live, who made it so and when, and the
results of candidates scored in shadow beside it.

- `models.content_hash`: one digest of the bundle's graphs and labels, the name of its
  copy in the bundle store.
- `model_promotions`: every promote and rollback, in order; the newest row names the
  active version (workers that follow the registry load it). `models.promoted_at` and
  `promoted_by` repeat the latest promotion of each version for the list.
- `shadow_results`: one row per (chunk, candidate version), the same figures a live
  result has; kept apart, so a candidate never changes what dashboards and alerts read.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB, UUID

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TIME = sa.TIMESTAMP(timezone=True)


def upgrade() -> None:
    op.add_column("models", sa.Column("content_hash", sa.Text(), nullable=True))
    op.add_column("models", sa.Column("promoted_at", _TIME, nullable=True))
    op.add_column("models", sa.Column("promoted_by", sa.Text(), nullable=True))
    op.create_table(
        "model_promotions",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("bundle_version", sa.Text(),
                  sa.ForeignKey("models.bundle_version", name="fk_model_promotions_models"),
                  nullable=False),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("previous_version", sa.Text(), nullable=True),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column("at", _TIME, server_default=sa.func.now(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.CheckConstraint("action IN ('promote', 'rollback')", name="ck_model_promotions_action"),
        sa.PrimaryKeyConstraint("id", name="pk_model_promotions"),
    )
    op.create_table(
        "shadow_results",
        sa.Column("chunk_id", UUID(as_uuid=True), nullable=False),
        sa.Column("bundle_version", sa.Text(), nullable=False),
        sa.Column("station_id", sa.Text(), nullable=False),
        sa.Column("chunk_start", _TIME, nullable=False),
        sa.Column("top_label", sa.Text(), nullable=True),
        sa.Column("confidence", sa.REAL(), nullable=True),
        sa.Column("detected", JSONB, nullable=False),
        sa.Column("top_k", JSONB, nullable=False),
        sa.Column("inference_ms", sa.REAL(), nullable=True),
        sa.Column("worker_id", sa.Text(), nullable=True),
        sa.Column("scored_at", _TIME, nullable=False),
        sa.Column("written_at", _TIME, server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("chunk_id", "bundle_version", name="pk_shadow_results"),
    )
    op.create_index("ix_shadow_results_bundle_version_chunk_start", "shadow_results",
                    ["bundle_version", "chunk_start"])


def downgrade() -> None:
    op.drop_table("shadow_results")
    op.drop_table("model_promotions")
    for column in ("promoted_by", "promoted_at", "content_hash"):
        op.drop_column("models", column)
