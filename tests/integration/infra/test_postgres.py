"""The private cluster: a writer that owns the data, a reader that can only read."""

from __future__ import annotations

import psycopg
import pytest
from sqlalchemy import create_engine, text

from soundscape.database import database_url, sqlalchemy_url
from soundscape.settings import Settings


def test_owner_creates_writer_writes_and_reader_only_reads(db_settings: Settings) -> None:
    with psycopg.connect(database_url(db_settings, "owner")) as conn:
        conn.execute("CREATE TABLE readings (id int PRIMARY KEY, level real)")
    with psycopg.connect(database_url(db_settings, "writer"), autocommit=True) as conn:
        conn.execute("INSERT INTO readings VALUES (1, -42.5)")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("CREATE TABLE mine (x int)")
    with psycopg.connect(database_url(db_settings, "reader")) as conn:
        assert conn.execute("SELECT level FROM readings").fetchone() == (-42.5,)
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute("INSERT INTO readings VALUES (2, 0)")
    with psycopg.connect(database_url(db_settings, "reader"), autocommit=True) as conn:
        conn.execute("SET default_transaction_read_only = off")  # the role may not escape:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("INSERT INTO readings VALUES (2, 0)")


def test_sqlalchemy_reaches_the_database(db_settings: Settings) -> None:
    engine = create_engine(sqlalchemy_url(database_url(db_settings)))
    with engine.connect() as conn:
        assert conn.execute(text("SELECT current_user")).scalar() == "soundscape_writer"
        version = conn.execute(text("SHOW server_version")).scalar()
    engine.dispose()
    assert version and int(version.split(".")[0]) >= 15


def test_wrong_password_is_refused(db_settings: Settings) -> None:
    url = database_url(db_settings, "reader")
    user_part, host_part = url.rsplit("@", 1)
    bad = user_part.rsplit(":", 1)[0] + ":wrong@" + host_part
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(bad, connect_timeout=5)
