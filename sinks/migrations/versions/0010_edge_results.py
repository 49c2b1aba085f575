"""Results stations scored themselves (`station.edge_bundle`), stored by `sink --edge`.

- `edge_results`: one row per (chunk, version), the figures of a shadow result plus
  `signer` (whose key signed it, as the sink verified it; null when unsigned or
  signatures are not checked) and `captured_at` (when the station finished recording the
  chunk: with `scored_at`, the latency an alert on the station has). Kept apart, so a
  station's own result never changes what dashboards, alerts and drift checks read.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB, UUID

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TIME = sa.TIMESTAMP(timezone=True)


def upgrade() -> None:
    op.create_table(
        "edge_results",
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
        sa.Column("signer", sa.Text(), nullable=True),
        sa.Column("captured_at", _TIME, nullable=False),
        sa.PrimaryKeyConstraint("chunk_id", "bundle_version", name="pk_edge_results"),
    )
    op.create_index("ix_edge_results_station_id_chunk_start", "edge_results",
                    ["station_id", "chunk_start"])


def downgrade() -> None:
    op.drop_table("edge_results")
