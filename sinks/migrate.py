"""Alembic, run from Python: what `soundscape db upgrade | downgrade | status` do.

The migration scripts ship inside the package (soundscape.sinks:migrations), so an
installed wheel migrates without an alembic.ini. Migrations run as the owner role; each
upgrade then gives the writer and the reader their rights on what exists.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from psycopg import sql
from sqlalchemy import Connection, text

from soundscape.settings import Settings
from soundscape.sinks.connection import connect, owner_engine
from soundscape.sinks.partition_plan import is_partition_name
from soundscape.sinks.schema import PARTITION_KEYS

SCRIPT_LOCATION = "soundscape.sinks:migrations"


def include_name(name: str | None, type_: str, parent_names: object) -> bool:
    """Partitions are made at run time, not by migrations: autogenerate ignores them."""
    return not (type_ == "table" and bool(name) and is_partition_name(str(name), PARTITION_KEYS))


def alembic_config(
    connection: Connection | None = None, output: io.StringIO | None = None
) -> Config:
    config = Config(output_buffer=output) if output is not None else Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "the package ships no migrations"
    return head


@dataclass(frozen=True)
class SchemaStatus:
    current: str | None
    head: str
    pending: list[str]

    @property
    def up_to_date(self) -> bool:
        return self.current == self.head

    def as_dict(self) -> dict[str, Any]:
        return {
            "current": self.current,
            "head": self.head,
            "pending": self.pending,
            "up_to_date": self.up_to_date,
        }


def current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def schema_status(settings: Settings, schema: str | None = None) -> SchemaStatus:
    engine = owner_engine(settings, schema)
    try:
        with engine.connect() as conn:
            current = current_revision(conn)
    finally:
        engine.dispose()
    scripts = ScriptDirectory.from_config(alembic_config())
    head = head_revision()
    pending = [
        s.revision for s in reversed(list(scripts.iterate_revisions(head, current or "base")))
        if s.revision != current
    ]
    return SchemaStatus(current, head, pending)


def upgrade(settings: Settings, revision: str = "head", schema: str | None = None) -> SchemaStatus:
    """Migrate forward, then make sure the reader may read what exists now."""
    engine = owner_engine(settings, schema)
    try:
        with engine.begin() as conn:
            command.upgrade(alembic_config(conn), revision)
            grant_table_rights(conn, settings)
    finally:
        engine.dispose()
    return schema_status(settings, schema)


def downgrade(settings: Settings, revision: str, schema: str | None = None) -> SchemaStatus:
    engine = owner_engine(settings, schema)
    try:
        with engine.begin() as conn:
            command.downgrade(alembic_config(conn), revision)
    finally:
        engine.dispose()
    return schema_status(settings, schema)


def upgrade_sql(revision: str = "head") -> str:
    """The SQL of an upgrade from scratch, for a DBA to read or run by hand."""
    out = io.StringIO()
    command.upgrade(alembic_config(output=out), f"base:{revision}", sql=True)
    return out.getvalue()


def grant_table_rights(conn: Connection, settings: Settings) -> None:
    """The writer's, the reader's and the web app's rights on every table of the
    current schema (the web app's INSERT on reviews too).

    The local cluster's default privileges already give them; an external database may
    lack those. A role that does not exist, or is the connected user itself (one URL for
    everything), is skipped.
    """
    pg = settings.postgres
    driver = conn.connection.driver_connection
    schema = sql.Identifier(conn.execute(text("SELECT current_schema()")).scalar_one())
    rights = {
        pg.reader_user: ["GRANT USAGE ON SCHEMA {schema} TO {role}",
                         "GRANT SELECT ON ALL TABLES IN SCHEMA {schema} TO {role}"],
        pg.web_user: ["GRANT USAGE ON SCHEMA {schema} TO {role}",
                      "GRANT SELECT ON ALL TABLES IN SCHEMA {schema} TO {role}"],
        pg.writer_user: ["GRANT USAGE ON SCHEMA {schema} TO {role}",
                         "GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA {schema} TO {role}",
                         "GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {schema} TO {role}"],
    }
    has_function = conn.execute(text(
        "SELECT 1 FROM pg_proc WHERE proname = 'soundscape_add_partition' "
        "AND pronamespace = current_schema()::regnamespace")).first()
    has_reviews = conn.execute(text(
        "SELECT 1 FROM pg_class WHERE relname = 'reviews' "
        "AND relnamespace = current_schema()::regnamespace")).first()
    if has_reviews:  # the web app stores people's verdicts, and nothing else
        rights[pg.web_user] += ["GRANT INSERT ON {schema}.reviews TO {role}",
                                "GRANT USAGE ON ALL SEQUENCES IN SCHEMA {schema} TO {role}"]
    if has_function:
        rights[pg.writer_user].append(
            "GRANT EXECUTE ON FUNCTION {schema}.soundscape_add_partition"
            "(text, timestamptz, timestamptz) TO {role}")
    for role, statements in rights.items():
        exists = conn.execute(
            text("SELECT 1 FROM pg_roles WHERE rolname = :r AND rolname <> current_user"),
            {"r": role},
        ).first()
        if not exists:
            continue
        for statement in statements:
            composed = sql.SQL(statement).format(schema=schema, role=sql.Identifier(role))
            conn.exec_driver_sql(composed.as_string(driver))


@contextlib.contextmanager
def scratch_schema(settings: Settings, schema: str) -> Iterator[None]:
    """A schema of a benchmark's own, migrated to the newest revision, dropped with
    everything in it when the block is left (however it is left)."""
    with connect(settings, role="owner") as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    try:
        upgrade(settings, schema=schema)
        yield
    finally:
        with connect(settings, role="owner") as conn:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
