"""Windowed bundles (BirdNET): where in the chunk a label was found, its common name and
the range model's verdict; the per-window scores and the embedding of a chunk; and the
species lists of a station, which the worker's range filter reads with its location.

All new columns are nullable: fusion results have none of them, and rows stored before
this revision keep NULL. Columns added to a partitioned table reach every partition, and
the reader's table-level SELECT covers new columns, so no grants change.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: table -> the columns this revision adds to it, in order.
COLUMNS: dict[str, tuple[tuple[str, sa.types.TypeEngine], ...]] = {  # type: ignore[type-arg]
    "detections": (
        ("common_name", sa.Text()),
        # Seconds inside the 10 s chunk of the window the label scored best in.
        ("window_start_s", sa.REAL()),
        ("window_end_s", sa.REAL()),
        # The species-range model's verdict at the station's location; NULL: unknown.
        ("in_range", sa.Boolean()),
    ),
    "chunks": (
        ("windows", postgresql.JSONB()),
        # float16 little-endian, 2 bytes a dimension (the message's base64, decoded).
        ("embedding", postgresql.BYTEA()),
    ),
    "stations": (
        # Scientific names: when set, only these count as in range at the station.
        ("include_species", postgresql.ARRAY(sa.Text())),
        # Scientific names never in range at the station.
        ("exclude_species", postgresql.ARRAY(sa.Text())),
    ),
}


def upgrade() -> None:
    for table, columns in COLUMNS.items():
        for name, type_ in columns:
            op.add_column(table, sa.Column(name, type_, nullable=True))


def downgrade() -> None:
    for table, columns in reversed(COLUMNS.items()):
        for name, _ in reversed(columns):
            op.drop_column(table, name)
