#!/bin/bash
# Runs once, when the compose PostgreSQL initialises its data volume: the three roles of
# the design and the database (the same rights `soundscape infra up` gives its cluster,
# infra/postgres/roles.py): the owner migrates, the writer (the sink) may SELECT, INSERT
# and UPDATE only, the reader SELECT in read-only sessions with a statement timeout, the
# web app SELECT with a shorter one.
set -euo pipefail
psql -v ON_ERROR_STOP=1 -U "${POSTGRES_USER:-postgres}" -p "${PGPORT:-5432}" -d postgres <<SQL
CREATE ROLE soundscape_owner LOGIN PASSWORD '${SOUNDSCAPE_OWNER_PASSWORD}';
CREATE ROLE soundscape_writer LOGIN PASSWORD '${SOUNDSCAPE_WRITER_PASSWORD}';
CREATE ROLE soundscape_reader LOGIN PASSWORD '${SOUNDSCAPE_READER_PASSWORD}';
CREATE ROLE soundscape_web LOGIN PASSWORD '${SOUNDSCAPE_WEB_PASSWORD}';
ALTER ROLE soundscape_web SET statement_timeout = 15000;  -- postgres.web_statement_timeout_s
ALTER ROLE soundscape_reader SET default_transaction_read_only = on;
ALTER ROLE soundscape_reader SET statement_timeout = 60000;  -- postgres.reader_statement_timeout_s
CREATE DATABASE soundscape OWNER soundscape_owner;
SQL
psql -v ON_ERROR_STOP=1 -U "${POSTGRES_USER:-postgres}" -p "${PGPORT:-5432}" -d soundscape <<SQL
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE, CREATE ON SCHEMA public TO soundscape_owner;
GRANT CONNECT ON DATABASE soundscape TO soundscape_writer, soundscape_reader, soundscape_web;
GRANT USAGE ON SCHEMA public TO soundscape_writer, soundscape_reader, soundscape_web;
ALTER DEFAULT PRIVILEGES FOR ROLE soundscape_owner GRANT SELECT, INSERT, UPDATE ON TABLES TO soundscape_writer;
ALTER DEFAULT PRIVILEGES FOR ROLE soundscape_owner GRANT USAGE, SELECT ON SEQUENCES TO soundscape_writer;
ALTER DEFAULT PRIVILEGES FOR ROLE soundscape_owner GRANT SELECT ON TABLES TO soundscape_reader, soundscape_web;
SQL
