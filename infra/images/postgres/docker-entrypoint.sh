#!/bin/bash
# Initialise the cluster on first start (password auth over TCP), run init scripts, then
# exec the server as the postgres user with the given arguments.
# POSTGRES_TLS_DIR (optional): a folder with server.pem and server.key (`soundscape infra
# certs`); the server then offers TLS with them, and clients from anywhere but loopback
# must use it (hostssl).
set -euo pipefail
as_pg() { runuser -u postgres -- "$@"; }

if [ "${1:-postgres}" != "postgres" ]; then exec "$@"; fi
shift || true
: "${POSTGRES_USER:=postgres}" "${POSTGRES_DB:=$POSTGRES_USER}"
mkdir -p "$PGDATA" /var/run/postgresql
chown postgres:postgres "$PGDATA" /var/run/postgresql
chmod 700 "$PGDATA"

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  if [ -z "${POSTGRES_PASSWORD:-}" ]; then
    echo "error: POSTGRES_PASSWORD must be set to initialise the database" >&2
    exit 1
  fi
  pwfile=$(mktemp); echo "$POSTGRES_PASSWORD" > "$pwfile"; chown postgres "$pwfile"
  as_pg initdb -D "$PGDATA" -U "$POSTGRES_USER" --pwfile="$pwfile" -E UTF8 --no-locale \
    --auth-local=scram-sha-256 --auth-host=scram-sha-256 >/dev/null
  rm -f "$pwfile"
  # initdb's own lines cover loopback; from anywhere else TLS when it is configured.
  echo "$([ -n "${POSTGRES_TLS_DIR:-}" ] && echo hostssl || echo host) all all all scram-sha-256" \
    >> "$PGDATA/pg_hba.conf"
  # No trust line anywhere: the init scripts below log in with the password too.
  export PGPASSWORD="$POSTGRES_PASSWORD"
  as_pg pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -c port=${PGPORT:-5432}" -w start >/dev/null
  if [ "$POSTGRES_DB" != "postgres" ]; then
    as_pg psql -v ON_ERROR_STOP=1 -U "$POSTGRES_USER" -p "${PGPORT:-5432}" -d postgres \
      -c "CREATE DATABASE \"$POSTGRES_DB\"" >/dev/null
  fi
  for f in /docker-entrypoint-initdb.d/*; do
    case "$f" in
      *.sql) as_pg psql -v ON_ERROR_STOP=1 -U "$POSTGRES_USER" -p "${PGPORT:-5432}" -d "$POSTGRES_DB" -f "$f" ;;
      *.sh) . "$f" ;;
    esac
  done
  as_pg pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
  unset PGPASSWORD
  echo "PostgreSQL init process complete; ready for start up."
fi
tls=()
if [ -n "${POSTGRES_TLS_DIR:-}" ]; then
  # The server reads its key only when the postgres user owns it and nobody else can.
  mkdir -p /var/lib/postgresql/tls
  install -o postgres -g postgres -m 0644 "$POSTGRES_TLS_DIR/server.pem" /var/lib/postgresql/tls/server.pem
  install -o postgres -g postgres -m 0600 "$POSTGRES_TLS_DIR/server.key" /var/lib/postgresql/tls/server.key
  tls=(-c ssl=on -c ssl_cert_file=/var/lib/postgresql/tls/server.pem
       -c ssl_key_file=/var/lib/postgresql/tls/server.key -c ssl_min_protocol_version=TLSv1.2)
fi
# setpriv execs (runuser would stay PID 1 and not pass the stop signal on: postgres
# would be killed after the grace period instead of shutting down).
exec setpriv --reuid=postgres --regid=postgres --init-groups \
  postgres -D "$PGDATA" -c listen_addresses='*' "${tls[@]}" "$@"
