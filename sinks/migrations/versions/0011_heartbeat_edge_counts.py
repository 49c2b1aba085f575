"""Stations that score their own chunks say how it goes; the heartbeats table keeps it.

- `station_heartbeats.edge_scored`, `edge_skipped`: the heartbeat's counts of chunks the
  station scored and of chunks it could not (scoring fell behind), since the station
  started; null for stations that score nothing. Added to the partitioned parent, so every
  partition, old and new, has them.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("station_heartbeats", sa.Column("edge_scored", sa.BigInteger(), nullable=True))
    op.add_column("station_heartbeats", sa.Column("edge_skipped", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    op.drop_column("station_heartbeats", "edge_skipped")
    op.drop_column("station_heartbeats", "edge_scored")
