#!/bin/bash
# Runs once, when the compose PostgreSQL initialises its data volume: the two roles of
# the design and the database (the same grants `soundscape infra up` gives its cluster).
set -euo pipefail
psql -v ON_ERROR_STOP=1 -U "${POSTGRES_USER:-postgres}" -p "${PGPORT:-5432}" -d postgres <<SQL
CREATE ROLE soundscape_writer LOGIN PASSWORD '${SOUNDSCAPE_WRITER_PASSWORD}';
CREATE ROLE soundscape_reader LOGIN PASSWORD '${SOUNDSCAPE_READER_PASSWORD}';
ALTER ROLE soundscape_reader SET default_transaction_read_only = on;
ALTER ROLE soundscape_reader SET statement_timeout = 60000;  -- postgres.reader_statement_timeout_s
CREATE DATABASE soundscape OWNER soundscape_writer;
SQL
psql -v ON_ERROR_STOP=1 -U "${POSTGRES_USER:-postgres}" -p "${PGPORT:-5432}" -d soundscape <<SQL
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE, CREATE ON SCHEMA public TO soundscape_writer;
GRANT CONNECT ON DATABASE soundscape TO soundscape_reader;
GRANT USAGE ON SCHEMA public TO soundscape_reader;
ALTER DEFAULT PRIVILEGES FOR ROLE soundscape_writer IN SCHEMA public GRANT SELECT ON TABLES TO soundscape_reader;
SQL
