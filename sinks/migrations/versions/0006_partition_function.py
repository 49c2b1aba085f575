"""New partitions through a function the owner vouches for: PostgreSQL lets only a
table's owner add a partition, and the sink's writer role owns nothing (it may SELECT,
INSERT and UPDATE), so `soundscape_add_partition` runs with its owner's rights and does
that one thing: a partition of one of the time-series tables, named by its lower bound.
Nobody may call it but the roles granted EXECUTE (the writer: migrate.grant_roles).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import context, op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: The range-partitioned tables of revision 0006 (schema.PARTITION_KEYS then).
_TABLES = ("chunks", "detections", "station_heartbeats", "drift_reports")


def upgrade() -> None:
    # The SQL printed for a DBA (`db upgrade --sql`) targets the default schema.
    schema = ("public" if context.is_offline_mode()
              else op.get_bind().exec_driver_sql("SELECT current_schema()").scalar_one())
    tables = ", ".join(f"'{t}'" for t in _TABLES)
    # search_path is pinned (schema, then pg_temp last), as for any SECURITY DEFINER
    # function, so a caller cannot slip objects of its own in front of the owner's.
    op.execute(f"""
CREATE FUNCTION soundscape_add_partition(parent text, lo timestamptz, hi timestamptz)
RETURNS text LANGUAGE plpgsql SECURITY DEFINER
SET search_path = "{schema}", pg_temp AS $fn$
DECLARE
    part text := parent || '_p' || to_char(lo AT TIME ZONE 'UTC', 'YYYYMMDD');
BEGIN
    IF parent IS NULL OR NOT parent = ANY (ARRAY[{tables}]) THEN
        RAISE EXCEPTION 'not a time-series table of Soundscape: %', parent
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF lo IS NULL OR hi IS NULL OR hi <= lo OR hi - lo > interval '32 days' THEN
        RAISE EXCEPTION 'not a partition range: [%, %)', lo, hi
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    EXECUTE format('CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L)',
                   part, parent, lo, hi);
    RETURN part;
END
$fn$""")
    op.execute("REVOKE ALL ON FUNCTION soundscape_add_partition(text, timestamptz, timestamptz) "
               "FROM PUBLIC")


def downgrade() -> None:
    op.execute("DROP FUNCTION soundscape_add_partition(text, timestamptz, timestamptz)")
