"""The local cluster as an attacker on the same machine meets it: no role without its
password (the socket included, tried as the OS user `nobody`), no `trust` rule, TLS that
verifies against the deployment's CA, a read-only role that can change nothing and whose
queries are capped, secrets in files only their owner reads, and a cluster made the old
way (trusting the socket) secured at its next start."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from soundscape.infra.certs import cert_paths, ensure_certs
from soundscape.infra.postgres.cluster import PostgresCluster
from soundscape.infra.postgres.roles import bootstrap_database
from soundscape.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.local_only]


@pytest.fixture(scope="module")
def cluster(run_state_dir: Path) -> Iterator[PostgresCluster]:
    settings = Settings(state_dir=run_state_dir / f"pgsec-{uuid.uuid4().hex[:6]}")
    cluster = PostgresCluster(settings)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(settings.state_dir, ignore_errors=True)


def _psql(cluster: PostgresCluster) -> str:
    return str(cluster.bin_dir() / "psql")


def _as_nobody(cluster: PostgresCluster, host: str, user: str) -> subprocess.CompletedProcess:
    if os.geteuid() != 0:
        pytest.fail("this test runs psql as `nobody` and must run as root (as CI does)")
    return subprocess.run(
        ["runuser", "-u", "nobody", "--", _psql(cluster), "-w", "-h", host,
         "-p", str(cluster.port()), "-U", user, "-d", "postgres", "-c", "SELECT 1"],
        capture_output=True, text=True, timeout=30, env={"PATH": os.environ["PATH"]},
    )


@pytest.mark.parametrize("user", ["postgres", "soundscape_owner", "soundscape_writer",
                                  "soundscape_reader", "soundscape_web"])
def test_a_local_os_user_gets_in_as_no_role_without_its_password(
    cluster: PostgresCluster, user: str
) -> None:
    on_socket = _as_nobody(cluster, str(cluster.run_dir), user)
    assert on_socket.returncode != 0
    assert "Permission denied" in on_socket.stderr, on_socket.stderr
    over_tcp = _as_nobody(cluster, "127.0.0.1", user)
    assert over_tcp.returncode != 0
    assert "no password supplied" in over_tcp.stderr, over_tcp.stderr


def test_root_on_the_socket_needs_the_password_too(cluster: PostgresCluster) -> None:
    with pytest.raises(psycopg.OperationalError, match="no password supplied|password"):
        psycopg.connect(host=str(cluster.run_dir), port=cluster.port(), user="postgres",
                        dbname="postgres", connect_timeout=5)
    with cluster.superuser_connect() as conn:  # with it, it works
        assert conn.execute("SELECT current_user").fetchone() == ("postgres",)


def test_every_rule_asks_for_a_scram_password(cluster: PostgresCluster) -> None:
    with cluster.superuser_connect() as conn:
        rules = conn.execute(
            "SELECT type, auth_method, error FROM pg_hba_file_rules").fetchall()
        assert rules and all(error is None for _, _, error in rules)
        assert {method for _, method, _ in rules} == {"scram-sha-256"}
        assert conn.execute("SHOW password_encryption").fetchone() == ("scram-sha-256",)
        hashes = conn.execute(
            "SELECT rolname, rolpassword FROM pg_authid WHERE rolcanlogin").fetchall()
    assert {name for name, _ in hashes} >= {"postgres", "soundscape_owner", "soundscape_writer",
                                            "soundscape_reader", "soundscape_web"}
    assert all(pw and pw.startswith("SCRAM-SHA-256$") for _, pw in hashes)


def test_tls_verifies_against_the_deployment_ca(
    cluster: PostgresCluster, tmp_path: Path
) -> None:
    url = cluster.url("reader")
    ca = cert_paths(cluster.settings).ca_cert
    with psycopg.connect(url, sslmode="verify-full", sslrootcert=str(ca)) as conn:
        row = conn.execute(
            "SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone()
    assert row[0] is True and row[1] in ("TLSv1.2", "TLSv1.3")
    # A client that trusts another CA refuses the server: a man in the middle gets nowhere.
    other = ensure_certs(Settings(state_dir=tmp_path))
    assert other["ca"]["sha256"] != ensure_certs(cluster.settings)["ca"]["sha256"]
    other_ca = cert_paths(Settings(state_dir=tmp_path)).ca_cert
    with pytest.raises(psycopg.OperationalError, match="certificate verify failed|root cert"):
        psycopg.connect(url, sslmode="verify-full", sslrootcert=str(other_ca), connect_timeout=5)


def test_beyond_loopback_only_tls_rules_exist(run_state_dir: Path) -> None:
    exposed = Settings(state_dir=run_state_dir / "unused")
    exposed = exposed.model_copy(update={"postgres": exposed.postgres.model_copy(
        update={"host": "0.0.0.0"})})
    rules = [r.split() for r in PostgresCluster(exposed)._hba_rules() if not r.startswith("#")]
    beyond_loopback = [r for r in rules if r[0] != "local" and r[3] not in ("127.0.0.1/32",
                                                                            "::1/128")]
    assert beyond_loopback == [["hostssl", "all", "all", "all", "scram-sha-256"]]
    loopback_only = PostgresCluster(Settings(state_dir=run_state_dir / "unused"))._hba_rules()
    assert not [r for r in loopback_only if r.split()[3:4] == ["all"]]


def test_the_reader_changes_nothing_and_its_queries_are_capped(cluster: PostgresCluster) -> None:
    with psycopg.connect(cluster.url("owner"), autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS readings (id int PRIMARY KEY, level real)")
        conn.execute("INSERT INTO readings VALUES (1, -40) ON CONFLICT DO NOTHING")
    with psycopg.connect(cluster.url("reader"), autocommit=True) as conn:
        conn.execute("SET default_transaction_read_only = off")
        for statement in ("INSERT INTO readings VALUES (2, 0)", "UPDATE readings SET level = 0",
                          "DELETE FROM readings", "TRUNCATE readings",
                          "CREATE TABLE mine (x int)", "DROP TABLE readings",
                          "CREATE ROLE evil LOGIN", "COPY readings TO PROGRAM 'id'"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
        assert conn.execute("SHOW statement_timeout").fetchone() == ("1min",)

    short = cluster.settings.model_copy(update={"postgres": cluster.settings.postgres.model_copy(
        update={"reader_statement_timeout_s": 0.5})})
    bootstrap_database(cluster.superuser_connect, short, cluster.credentials())
    try:
        with psycopg.connect(cluster.url("reader")) as conn:
            with pytest.raises(psycopg.errors.QueryCanceled):
                conn.execute("SELECT pg_sleep(5)")
    finally:
        cluster.bootstrap()


def test_the_sink_writer_inserts_and_updates_and_changes_nothing_else(
    cluster: PostgresCluster,
) -> None:
    """Migrated as the owner, the results database lets the writer store results (a new
    time partition included, through the owner's function) and nothing more."""
    from soundscape.sinks import migrate
    from soundscape.sinks.sample_results import detection
    from soundscape.sinks.writer import ResultBatch, ResultWriter

    settings = cluster.settings
    migrate.upgrade(settings)
    writer = ResultWriter(settings)
    try:
        counts = writer.write(ResultBatch([detection("roof-1", 1_561_000_000 * 10**9)]))
    finally:
        writer.close()
    assert counts.chunks == 1 and "chunks_p20190601" in counts.partitions_created
    with psycopg.connect(cluster.url("writer"), autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM chunks").fetchone() == (1,)
        assert conn.execute("SELECT tableowner FROM pg_tables WHERE tablename = "
                            "'chunks_p20190601'").fetchone() == ("soundscape_owner",)
        for statement in (
            "DELETE FROM chunks", "TRUNCATE chunks", "DROP TABLE chunks_p20190601",
            "ALTER TABLE chunks DETACH PARTITION chunks_p20190601",
            "ALTER TABLE chunks ADD COLUMN note text", "CREATE TABLE mine (x int)",
            "CREATE SCHEMA mine", "CREATE ROLE evil LOGIN", "COPY chunks TO PROGRAM 'id'",
            "CREATE TABLE models_p1 PARTITION OF chunks FOR VALUES FROM ('2030-01-01') "
            "TO ('2030-02-01')",
            # The function makes time partitions of the time-series tables, nothing else.
            "SELECT soundscape_add_partition('models', now(), now() + interval '1 day')",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
        with pytest.raises(psycopg.errors.InvalidParameterValue):
            conn.execute("SELECT soundscape_add_partition('chunks', now(), now() - "
                         "interval '1 day')")
    with psycopg.connect(cluster.url("reader"), autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT soundscape_add_partition('chunks', '2031-01-01', '2031-02-01')")


def test_the_web_role_reads_inserts_reviews_only_and_is_capped(cluster: PostgresCluster) -> None:
    """The web app reads, and stores people's verdicts (reviews): nothing else."""
    from soundscape.sinks import migrate

    migrate.upgrade(cluster.settings)
    with psycopg.connect(cluster.url("web"), autocommit=True) as conn:
        assert conn.execute("SELECT count(*) >= 0 FROM detections").fetchone() == (True,)
        assert conn.execute("SHOW statement_timeout").fetchone() == ("15s",)
        review = conn.execute(
            "INSERT INTO reviews (chunk_id, chunk_start, label, verdict, reviewer) VALUES "
            "(gen_random_uuid(), now(), 'Parus major', 'confirm', 'test') "
            "RETURNING review_id").fetchone()
        assert review is not None
        for statement in ("INSERT INTO stations (station_id) VALUES ('x')",
                          "UPDATE models SET location = 'x'", "DELETE FROM chunks",
                          "UPDATE reviews SET verdict = 'reject'", "DELETE FROM reviews",
                          "INSERT INTO clips (chunk_id, chunk_start, station_id, path, bytes,"
                          " codec, reason, top_label, top_probability) VALUES (gen_random_uuid(),"
                          " now(), 'x', 'x', 1, 'flac', 'negative', 'x', 0.1)",
                          "CREATE TABLE mine (x int)", "COPY chunks TO PROGRAM 'id'",
                          "SELECT soundscape_add_partition('chunks', '2031-01-01', "
                          "'2031-02-01')"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)


def test_a_database_the_writer_owned_is_handed_to_the_owner(cluster: PostgresCluster) -> None:
    from psycopg import sql

    name = f"legacy_{uuid.uuid4().hex[:6]}"
    with cluster.superuser_connect() as conn:  # made the way `infra up` made it before
        conn.execute(sql.SQL("CREATE DATABASE {} OWNER soundscape_writer").format(
            sql.Identifier(name)))
    with cluster.superuser_connect(name) as conn:
        conn.execute("GRANT CREATE ON SCHEMA public TO soundscape_writer")
    settings = cluster.settings.model_copy(update={"postgres": cluster.settings.postgres
                                                   .model_copy(update={"database": name})})
    writer_url = cluster.url("writer", name)
    with psycopg.connect(writer_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE results (id int PRIMARY KEY)")
        conn.execute("INSERT INTO results VALUES (1)")
    try:
        bootstrap_database(cluster.superuser_connect, settings, cluster.credentials())
        with psycopg.connect(writer_url, autocommit=True) as conn:
            owners = conn.execute(
                "SELECT (SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = "
                "current_database()), (SELECT tableowner FROM pg_tables WHERE tablename = "
                "'results')").fetchone()
            assert owners == ("soundscape_owner", "soundscape_owner")
            conn.execute("INSERT INTO results VALUES (2)")  # still writes
            for statement in ("DROP TABLE results", "DELETE FROM results",
                              "CREATE TABLE mine (x int)"):
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    conn.execute(statement)
    finally:
        with cluster.superuser_connect() as conn:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def test_secrets_are_readable_by_their_owner_only(cluster: PostgresCluster) -> None:
    paths = cert_paths(cluster.settings)
    for secret in (cluster.credentials_file, paths.ca_key, paths.server_key,
                   cluster.tls_dir / "server.key"):
        mode = stat.S_IMODE(secret.stat().st_mode)
        assert mode == 0o600, f"{secret} is {oct(mode)}"
    for folder in (cluster.run_dir, cluster.tls_dir, cluster.data_dir):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder


def test_a_cluster_that_trusted_its_socket_is_secured_at_the_next_start(
    run_state_dir: Path,
) -> None:
    settings = Settings(state_dir=run_state_dir / f"pglegacy-{uuid.uuid4().hex[:6]}")
    cluster = PostgresCluster(settings)
    cluster.start()
    try:
        # Make it what `infra up` made before: trust on the socket, postgres without password.
        with cluster.superuser_connect() as conn:
            (cluster.data_dir / "pg_hba.conf").write_text(
                "local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n")
            conn.execute("SELECT pg_reload_conf()")
            conn.execute("ALTER ROLE postgres PASSWORD NULL")
        with psycopg.connect(host=str(cluster.run_dir), port=cluster.port(), user="postgres",
                             dbname="postgres") as conn:  # the old way: in without a password
            assert conn.execute("SELECT 1").fetchone() == (1,)
        cluster.stop()
        cluster.start()
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(host=str(cluster.run_dir), port=cluster.port(), user="postgres",
                            dbname="postgres", connect_timeout=5)
        with cluster.superuser_connect() as conn:
            methods = {m for (m,) in conn.execute("SELECT auth_method FROM pg_hba_file_rules")}
        assert methods == {"scram-sha-256"}
    finally:
        cluster.stop()
        shutil.rmtree(settings.state_dir, ignore_errors=True)
