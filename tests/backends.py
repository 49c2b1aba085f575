"""Where integration tests get Kafka and PostgreSQL: local processes or testcontainers.

SOUNDSCAPE_TEST_BACKEND=local (default): the broker and cluster `soundscape infra up` runs.
SOUNDSCAPE_TEST_BACKEND=containers: the same services in Docker containers started by
testcontainers from the images `soundscape images build` makes, every container on host
networking (no bridge, no traffic off loopback), on free ports.
Both give the tests a Settings and a superuser connect function, so the tests are the same.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from soundscape.settings import Settings


@dataclass
class Backend:
    name: str
    settings: Settings
    connect_admin: Callable[[str], Any]  # dbname -> autocommit superuser connection
    url_for: Callable[[str, str], str]  # (role, database) -> libpq URL


def backend_name() -> str:
    name = os.environ.get("SOUNDSCAPE_TEST_BACKEND", "local")
    if name not in ("local", "containers"):
        raise ValueError(f"SOUNDSCAPE_TEST_BACKEND={name!r}: use local or containers")
    return name


@contextmanager
def local_backend(state_dir: Path) -> Iterator[Backend]:
    from soundscape.infra import stack
    from soundscape.infra.postgres.cluster import PostgresCluster

    settings = Settings(state_dir=state_dir)
    report = stack.up(settings)
    print(f"\nlocal services up: {report}")
    cluster = PostgresCluster(settings)
    try:
        yield Backend(
            "local", settings, cluster.superuser_connect,
            lambda role, database: cluster.url(role, database) or "",
        )
    finally:
        stack.down(settings)


@contextmanager
def container_backend(state_dir: Path) -> Iterator[Backend]:
    import psycopg
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.wait_strategies import LogMessageWaitStrategy

    from soundscape.infra.images.builder import ensure_images, start_engine
    from soundscape.kafka_topics import ensure_topics
    from soundscape.infra.postgres.roles import ROLES, bootstrap_database
    from soundscape.infra.process import free_port, wait_for

    os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")  # the reaper can't be pulled
    base = Settings(state_dir=state_dir)
    start_engine()
    started = time.monotonic()
    images = ensure_images(base)
    print(f"\nimages: {images} ({time.monotonic() - started:.1f} s)")

    pg_port, kafka_port, controller_port = free_port(), free_port(), free_port()
    superuser_password = secrets.token_urlsafe(16)
    postgres = (
        DockerContainer(base.images.postgres_tag)
        .with_kwargs(network_mode="host")
        .with_env("POSTGRES_PASSWORD", superuser_password)
        .with_env("PGPORT", str(pg_port))
        .with_command(f"postgres -c listen_addresses=127.0.0.1 -c port={pg_port}")
        .waiting_for(LogMessageWaitStrategy("database system is ready to accept connections"))
    )
    listeners = f"PLAINTEXT://127.0.0.1:{kafka_port},CONTROLLER://127.0.0.1:{controller_port}"
    kafka_env = {
        "KAFKA_NODE_ID": "1",
        "KAFKA_PROCESS_ROLES": "broker,controller",
        "KAFKA_LISTENERS": listeners,
        "KAFKA_ADVERTISED_LISTENERS": f"PLAINTEXT://127.0.0.1:{kafka_port}",
        "KAFKA_CONTROLLER_LISTENER_NAMES": "CONTROLLER",
        "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "KAFKA_CONTROLLER_QUORUM_VOTERS": f"1@127.0.0.1:{controller_port}",
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR": "1",
        "KAFKA_OFFSETS_TOPIC_NUM_PARTITIONS": "10",
        "KAFKA_TRANSACTION_STATE_LOG_NUM_PARTITIONS": "10",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "1",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": "1",
        "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR": "1",
        "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_MIN_ISR": "1",
        "KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS": "0",
        "KAFKA_AUTO_CREATE_TOPICS_ENABLE": "false",
        "KAFKA_MESSAGE_MAX_BYTES": str(base.kafka.max_message_bytes + 64 * 1024),
        "KAFKA_REPLICA_FETCH_MAX_BYTES": str(base.kafka.max_message_bytes + 64 * 1024),
    }
    kafka = DockerContainer(base.images.kafka_tag).with_kwargs(network_mode="host")
    for key, value in kafka_env.items():
        kafka = kafka.with_env(key, value)
    kafka = kafka.waiting_for(LogMessageWaitStrategy("Kafka Server started"))

    started = time.monotonic()
    with postgres, kafka:
        print(f"containers up in {time.monotonic() - started:.1f} s "
              f"(postgres :{pg_port}, kafka :{kafka_port})")

        def connect_admin(dbname: str) -> Any:
            return psycopg.connect(host="127.0.0.1", port=pg_port, user="postgres",
                                   password=superuser_password, dbname=dbname,
                                   autocommit=True, connect_timeout=10)

        def ready() -> bool:
            try:
                connect_admin("postgres").close()
                return True
            except psycopg.OperationalError:
                return False

        wait_for(ready, 60)
        creds = {f"{role}_password": secrets.token_urlsafe(16) for role in ROLES}
        bootstrap_database(connect_admin, base, creds)
        pg = base.postgres

        def url_for(role: str, database: str) -> str:
            user = getattr(pg, f"{role}_user")
            return f"postgresql://{user}:{creds[role + '_password']}@127.0.0.1:{pg_port}/{database}"

        settings = base.model_copy(update={
            "kafka": base.kafka.model_copy(
                update={"bootstrap_servers": f"127.0.0.1:{kafka_port}"}),
            "postgres": pg.model_copy(update={
                "url": _secret(url_for("writer", pg.database)),
                "reader_url": _secret(url_for("reader", pg.database)),
                "owner_url": _secret(url_for("owner", pg.database)),
            }),
        })
        ensure_topics(settings)
        yield Backend("containers", settings, connect_admin, url_for)


def _secret(value: str) -> Any:
    from pydantic import SecretStr

    return SecretStr(value)


def start_backend(state_dir: Path) -> Any:
    return (container_backend if backend_name() == "containers" else local_backend)(state_dir)


def fresh_database(backend: Backend, name: str) -> Settings:
    """A database of a test's own, owned by the owner role with every role's rights, and
    settings reaching it as each role (the caller drops it: drop_database)."""
    from psycopg import sql
    from pydantic import SecretStr

    from soundscape.infra.postgres.roles import grant_roles

    settings = backend.settings
    with backend.connect_admin("postgres") as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(
            sql.Identifier(name), sql.Identifier(settings.postgres.owner_user)))
    grant_roles(backend.connect_admin, settings, name)
    postgres = settings.postgres.model_copy(update={
        "database": name,
        "url": SecretStr(backend.url_for("writer", name)),
        "reader_url": SecretStr(backend.url_for("reader", name)),
        "owner_url": SecretStr(backend.url_for("owner", name)),
        "web_url": SecretStr(backend.url_for("web", name)),
    })
    return settings.model_copy(update={"postgres": postgres})


def drop_database(backend: Backend, name: str) -> None:
    from psycopg import sql

    with backend.connect_admin("postgres") as conn:
        conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
