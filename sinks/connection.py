"""Connections of the sink and the `db` commands: a role (the sink writes as the writer;
migrations and retention run as the owner), UTC session, optional schema.

The session time zone is pinned to UTC because partition bounds are read back as text.
A schema other than the default (the benchmark uses a scratch one) is set as the
search_path, so migrations, the sink and the queries need no schema-qualified names.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from typing import Any

import psycopg
from sqlalchemy import Engine, create_engine
from sqlalchemy.pool import NullPool

from soundscape.database import Role, database_url, sqlalchemy_url
from soundscape.errors import UserError
from soundscape.settings import Settings

_SCHEMA_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def session_options(schema: str | None = None) -> str:
    options = "-c timezone=UTC"
    if schema is not None:
        if not _SCHEMA_RE.match(schema):
            raise UserError(f"bad schema name {schema!r}", hint="use [a-z_][a-z0-9_]*")
        options += f" -c search_path={schema}"
    return options


def connect(
    settings: Settings,
    *,
    schema: str | None = None,
    application_name: str = "soundscape",
    connect_timeout_s: int = 5,
    role: Role = "writer",
) -> psycopg.Connection[Any]:
    """An autocommit connection as `role`; callers open transactions explicitly."""
    return psycopg.connect(
        database_url(settings, role),
        autocommit=True,
        connect_timeout=connect_timeout_s,
        options=session_options(schema),
        application_name=application_name,
    )


@contextlib.contextmanager
def connect_to_table(settings: Settings, what: str, *, schema: str | None = None,
                     application_name: str = "soundscape") -> Iterator[psycopg.Connection[Any]]:
    """A writer connection for a command on `what` (a table the migrations make): a
    database not yet migrated that far is one clear message, not a traceback."""
    try:
        with connect(settings, schema=schema, application_name=application_name) as conn:
            yield conn
    except (psycopg.errors.UndefinedTable, psycopg.errors.UndefinedColumn):
        raise UserError(f"the results database has no {what} yet",
                        hint="run `soundscape db upgrade`") from None


def owner_engine(settings: Settings, schema: str | None = None) -> Engine:
    """SQLAlchemy engine as the owner (migrations); no pool, as commands are short."""
    return create_engine(
        sqlalchemy_url(database_url(settings, "owner")),
        poolclass=NullPool,
        connect_args={"options": session_options(schema), "connect_timeout": 10},
    )
