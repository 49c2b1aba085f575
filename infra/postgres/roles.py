"""The database and its two roles, on any server we hold a superuser connection to.

Used for the local cluster and for containers alike: the writer owns the database; the
reader may connect and select (now and on every table the writer creates later) and its
sessions are read-only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from psycopg import sql

from soundscape.settings import Settings

#: connect(dbname) -> an autocommit psycopg connection as a superuser
Connect = Callable[[str], Any]


def bootstrap_database(connect: Connect, settings: Settings, creds: dict[str, str]) -> None:
    pg = settings.postgres
    writer, reader = sql.Identifier(pg.writer_user), sql.Identifier(pg.reader_user)
    with connect("postgres") as conn:
        for role, password in ((pg.writer_user, creds["writer_password"]),
                               (pg.reader_user, creds["reader_password"])):
            exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
            verb = "ALTER" if exists else "CREATE"
            conn.execute(
                sql.SQL(verb + " ROLE {} LOGIN PASSWORD {}").format(
                    sql.Identifier(role), sql.Literal(password)
                )
            )
        conn.execute(sql.SQL("ALTER ROLE {} SET default_transaction_read_only = on").format(reader))
        # One runaway dashboard query must not hold the database: the reader's are capped.
        timeout_ms = int(pg.reader_statement_timeout_s * 1000)
        conn.execute(sql.SQL("ALTER ROLE {} SET statement_timeout = {}").format(
            reader, sql.Literal(timeout_ms)))
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (pg.database,)).fetchone():
            conn.execute(
                sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(pg.database), writer)
            )
    grant_read_only(connect, settings, pg.database)


def grant_read_only(connect: Connect, settings: Settings, database: str) -> None:
    pg = settings.postgres
    writer, reader = sql.Identifier(pg.writer_user), sql.Identifier(pg.reader_user)
    with connect(database) as conn:
        for statement in (
            "REVOKE CREATE ON SCHEMA public FROM PUBLIC",
            "GRANT USAGE, CREATE ON SCHEMA public TO {writer}",
            "GRANT CONNECT ON DATABASE {db} TO {reader}",
            "GRANT USAGE ON SCHEMA public TO {reader}",
            "GRANT SELECT ON ALL TABLES IN SCHEMA public TO {reader}",
            "ALTER DEFAULT PRIVILEGES FOR ROLE {writer} IN SCHEMA public "
            "GRANT SELECT ON TABLES TO {reader}",
        ):
            conn.execute(
                sql.SQL(statement).format(writer=writer, reader=reader, db=sql.Identifier(database))
            )
