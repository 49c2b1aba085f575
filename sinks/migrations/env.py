"""Alembic environment, shipped in the package so an installed wheel can migrate.

`soundscape db upgrade|downgrade|status` (soundscape.sinks.migrate) pass an open
connection in `config.attributes["connection"]`; run through the `alembic` tool instead,
this connects as the owner from the Soundscape settings.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from soundscape.sinks.migrate import include_name
from soundscape.sinks.schema import Base

config = context.config


def run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        include_name=include_name,
        transaction_per_migration=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_offline() -> None:
    """`soundscape db upgrade --sql`: print the SQL for a DBA instead of running it."""
    context.configure(
        dialect_name="postgresql",
        target_metadata=Base.metadata,
        literal_binds=True,
        transaction_per_migration=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_offline()
else:
    connection = config.attributes.get("connection")
    if connection is not None:
        run(connection)
    else:
        from soundscape.settings import load_settings
        from soundscape.sinks.connection import owner_engine

        engine = owner_engine(load_settings())
        with engine.begin() as conn:
            run(conn)
        engine.dispose()
