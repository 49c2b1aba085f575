"""Both local services together: what `soundscape infra up | down | status | reset` do."""

from __future__ import annotations

import shutil
import time
from typing import Any

from soundscape.infra import process
from soundscape.infra.kafka.broker import KafkaBroker
from soundscape.infra.kafka.cluster import KafkaCluster, local_cluster_nodes
from soundscape.infra.kafka.principals import ensure_local_services
from soundscape.infra.postgres.cluster import PostgresCluster
from soundscape.kafka_topics import ensure_topics
from soundscape.local_services import (
    kafka_state_file,
    local_kafka_secured,
    postgres_state_file,
    web_state_file,
)
from soundscape.errors import ServiceError
from soundscape.settings import Settings


def up(settings: Settings, *, kafka: bool = True, postgres: bool = True,
       brokers: int | None = None) -> dict[str, Any]:
    """Start what is not running; returns per-service seconds and what was done.
    `brokers`: 3 (or more) runs a local cluster; None keeps what the state folder holds
    (the single broker by default)."""
    report: dict[str, Any] = {}
    if postgres and settings.postgres.url is None:
        started = time.monotonic()
        cluster = PostgresCluster(settings)
        was_running = cluster.pid() is not None
        cluster.start()
        report["postgres"] = {
            "seconds": round(time.monotonic() - started, 2),
            "action": "already running" if was_running else "started",
        }
    if kafka and settings.kafka.bootstrap_servers is None:
        started = time.monotonic()
        broker = KafkaBroker(settings)
        nodes = brokers or local_cluster_nodes(settings)
        fetched = 0.0 if broker.jars.is_complete() else broker.jars.fetch()
        if nodes > 1:
            cluster = KafkaCluster(settings, nodes)
            was_running = all(node.running for node in cluster.status())
            cluster.start()
        else:
            if local_cluster_nodes(settings) > 1:
                raise ServiceError("the state folder holds a local Kafka cluster",
                                   hint="`infra up --brokers N` with its size, or `infra down "
                                        "&& infra reset --kafka` for the single broker")
            was_running = broker.pid() is not None
            broker.start()
        report["kafka"] = {
            "seconds": round(time.monotonic() - started, 2),
            "jar_fetch_seconds": round(fetched, 2),
            "action": "already running" if was_running else "started",
            **({"brokers": nodes} if nodes > 1 else {}),
        }
    if kafka:
        started = time.monotonic()
        nodes = 1 if settings.kafka.bootstrap_servers else (brokers or local_cluster_nodes(settings))
        outcome = ensure_topics(settings, brokers=nodes if nodes > 1 else None)
        report["topics"] = {"seconds": round(time.monotonic() - started, 2), "topics": outcome}
    if kafka and local_kafka_secured(settings):
        report["principals"] = ensure_local_services(settings,
                                                     KafkaBroker(settings).store_password)
    return report


def down(settings: Settings) -> dict[str, bool]:
    """Stop both, and the web app `soundscape demo` left running; True for each service
    that was running."""
    return {
        "web": stop_web(settings),
        "kafka": local_kafka(settings).stop(),
        "postgres": PostgresCluster(settings).stop(),
    }


def local_kafka(settings: Settings) -> KafkaBroker | KafkaCluster:
    """The single broker, or the local cluster when the state folder holds one."""
    nodes = local_cluster_nodes(settings)
    return KafkaCluster(settings, nodes) if nodes > 1 else KafkaBroker(settings)


def stop_web(settings: Settings) -> bool:
    """The background web app (web_state_file), if its process is the web app."""
    state_file = web_state_file(settings)
    pid = (process.read_json(state_file) or {}).get("pid")
    if not pid or not process.pid_alive(int(pid)) or \
            " web" not in process.process_cmdline(int(pid)):
        state_file.unlink(missing_ok=True)
        return False
    if not process.terminate(int(pid), timeout_s=20):
        raise ServiceError(f"the web app (pid {pid}) did not stop", hint=f"kill -9 {pid}")
    state_file.unlink(missing_ok=True)
    return True


def status(settings: Settings) -> dict[str, Any]:
    from soundscape.database import database_url

    broker, cluster = KafkaBroker(settings), PostgresCluster(settings)
    kafka: dict[str, Any]
    if settings.kafka.bootstrap_servers:
        kafka = {"external": True, "bootstrap_servers": settings.kafka.bootstrap_servers}
    elif local_cluster_nodes(settings) > 1:
        local = KafkaCluster(settings, local_cluster_nodes(settings))
        nodes = local.status()
        kafka = {"external": False, "running": all(n.running for n in nodes),
                 "bootstrap_servers": broker.bootstrap_address(),
                 "brokers": [vars(n) for n in nodes]}
        if any(n.running for n in nodes):
            try:
                kafka |= local.health()
            except Exception as exc:  # noqa: BLE001 - a status report, never a traceback
                kafka["health_error"] = str(exc)
    else:
        kafka = {"external": False, **broker.status().as_dict()}
    postgres: dict[str, Any]
    if settings.postgres.url is not None:
        postgres = {"external": True}
    else:
        postgres = {"external": False, **cluster.status().as_dict()}
    try:
        url: str | None = database_url(settings)
        reader: str | None = database_url(settings, "reader")
    except Exception:  # noqa: BLE001 - not started yet: nothing to report
        url = reader = None
    return {
        "state_dir": str(settings.state_dir),
        "kafka": kafka,
        "postgres": postgres,
        "listeners": listeners(settings),
        "bootstrap_servers": kafka.get("bootstrap_servers"),
        "database_url": url,
        "database_url_readonly": reader,
    }


def reset(settings: Settings, *, kafka: bool = True, postgres: bool = True) -> list[str]:
    """Stop and wipe the services' state (the jar cache stays). Returns what was wiped."""
    wiped = []
    if kafka:
        try:
            local_kafka(settings).stop()
        except ServiceError:  # an unreadable state file: reset is how it gets mended
            KafkaBroker(settings).stop()
        broker = KafkaBroker(settings)
        shutil.rmtree(broker.home, ignore_errors=True)
        wiped.append(str(broker.home))
    if postgres:
        cluster = PostgresCluster(settings)
        if cluster.pid() is not None:
            cluster.stop()
        shutil.rmtree(cluster.home, ignore_errors=True)
        wiped.append(str(cluster.home))
    return wiped


def listeners(settings: Settings) -> list[dict[str, str]]:
    """Every address the local services listen on, and who may connect there."""
    found: list[dict[str, str]] = []
    if not settings.kafka.bootstrap_servers:
        state = process.read_json(kafka_state_file(settings)) or {}
        host = settings.kafka.host
        secured = local_kafka_secured(settings)
        if state.get("port"):
            found.append({"service": "kafka", "address": f"{host}:{state['port']}",
                          "auth": "SASL_PLAINTEXT PLAIN, the broker's admin only: the "
                                  "operator's commands (loopback only)" if secured else
                                  "PLAINTEXT, anonymous super user: this machine's own "
                                  "services (loopback only)"})
        if state.get("controller_port"):
            found.append({"service": "kafka controller",
                          "address": f"{host}:{state['controller_port']}",
                          "auth": ("SASL_PLAINTEXT PLAIN, the broker's admin only"
                                   if secured else "PLAINTEXT")
                                  + ": the broker's own controller (loopback only)"})
        if state.get("stations_port"):
            found.append({"service": "kafka stations",
                          "address": f"{settings.kafka.stations_host}:{state['stations_port']}",
                          "auth": "SASL_SSL SCRAM-SHA-512, ACLs per station and service"})
    if settings.postgres.url is None:
        state = process.read_json(postgres_state_file(settings)) or {}
        if state.get("port"):
            found.append({"service": "postgres",
                          "address": f"{settings.postgres.host}:{state['port']}",
                          "auth": "scram-sha-256; TLS offered on loopback, required beyond"})
            found.append({"service": "postgres socket",
                          "address": str(settings.state_dir / "postgres" / "run"),
                          "auth": "scram-sha-256; folder 0700"})
    web = process.read_json(web_state_file(settings)) or {}
    if web.get("pid") and process.pid_alive(int(web["pid"])):
        found.append({"service": "web", "address": f"{web['host']}:{web['port']}",
                      "auth": ("reading open (web.public_read)" if settings.web.public_read
                               else "reading after login")
                              + "; reviewing: argon2 accounts, session cookie and CSRF token"})
    return found
