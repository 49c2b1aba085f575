"""The database and its four roles, on any server we hold a superuser connection to.

Used for the local cluster and for containers alike:
- the owner owns the database, its schema and tables: migrations and retention;
- the writer (the sink) may SELECT, INSERT and UPDATE the tables, no more: it cannot
  delete, truncate, drop, alter or create anything; new partitions come from a function
  the owner made (sinks/migrate.py);
- the reader may connect and SELECT, in read-only sessions with a statement timeout;
- the web app's role may SELECT, with a shorter statement timeout (INSERT on reviews
  comes with the web app).
A database the writer owned (before the owner role existed) is handed to the owner.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from psycopg import sql

from soundscape.settings import Settings

#: connect(dbname) -> an autocommit psycopg connection as a superuser
Connect = Callable[[str], Any]
#: The login roles of the design; `postgres.<role>_user` names each.
ROLES = ("owner", "writer", "reader", "web")


def bootstrap_database(connect: Connect, settings: Settings, creds: dict[str, str]) -> None:
    pg = settings.postgres
    owner, reader = sql.Identifier(pg.owner_user), sql.Identifier(pg.reader_user)
    database = sql.Identifier(pg.database)
    with connect("postgres") as conn:
        for role in ROLES:
            name = getattr(pg, f"{role}_user")
            exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone()
            verb = "ALTER" if exists else "CREATE"
            conn.execute(sql.SQL(verb + " ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(name), sql.Literal(creds[f"{role}_password"])))
        conn.execute(sql.SQL("ALTER ROLE {} SET default_transaction_read_only = on").format(reader))
        # One runaway dashboard query must not hold the database: the reader's are capped.
        timeout_ms = int(pg.reader_statement_timeout_s * 1000)
        conn.execute(sql.SQL("ALTER ROLE {} SET statement_timeout = {}").format(
            reader, sql.Literal(timeout_ms)))
        conn.execute(sql.SQL("ALTER ROLE {} SET statement_timeout = {}").format(
            sql.Identifier(pg.web_user), sql.Literal(int(pg.web_statement_timeout_s * 1000))))
        found = conn.execute(
            "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s",
            (pg.database,)).fetchone()
        if found is None:
            conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(database, owner))
        elif found[0] != pg.owner_user:
            conn.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(database, owner))
    grant_roles(connect, settings, pg.database)


def grant_roles(connect: Connect, settings: Settings, database: str) -> None:
    """Each role's rights in `database` (idempotent); objects the writer still owns
    (made before the owner role existed) become the owner's."""
    pg = settings.postgres
    names = {"owner": sql.Identifier(pg.owner_user), "writer": sql.Identifier(pg.writer_user),
             "reader": sql.Identifier(pg.reader_user), "web": sql.Identifier(pg.web_user),
             "db": sql.Identifier(database)}
    with connect(database) as conn:
        owns = conn.execute(
            "SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE pg_get_userbyid(c.relowner) = %s AND n.nspname NOT LIKE 'pg\\_%%' "
            "AND n.nspname <> 'information_schema' LIMIT 1", (pg.writer_user,)).fetchone()
        if owns:
            conn.execute(sql.SQL("REASSIGN OWNED BY {writer} TO {owner}").format(**names))
        for statement in (
            "REVOKE CREATE ON SCHEMA public FROM PUBLIC",
            "REVOKE CREATE ON SCHEMA public FROM {writer}",
            "GRANT USAGE, CREATE ON SCHEMA public TO {owner}",
            "GRANT CONNECT ON DATABASE {db} TO {writer}, {reader}, {web}",
            "GRANT USAGE ON SCHEMA public TO {writer}, {reader}, {web}",
            "GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA public TO {writer}",
            "GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {writer}",
            "GRANT SELECT ON ALL TABLES IN SCHEMA public TO {reader}, {web}",
            "ALTER DEFAULT PRIVILEGES FOR ROLE {owner} GRANT SELECT, INSERT, UPDATE ON TABLES "
            "TO {writer}",
            "ALTER DEFAULT PRIVILEGES FOR ROLE {owner} GRANT USAGE, SELECT ON SEQUENCES "
            "TO {writer}",
            "ALTER DEFAULT PRIVILEGES FOR ROLE {owner} GRANT SELECT ON TABLES TO {reader}, {web}",
        ):
            conn.execute(sql.SQL(statement).format(**names))
