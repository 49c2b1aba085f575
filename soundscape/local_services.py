"""Where the services `soundscape infra up` started can be reached, read from their state
files, so that clients find a local broker or database without importing the room that
runs them.

The files (under `state_dir`, written by `infra/`; this module only reads them):
- `kafka/state.json`: `{"port": int, "controller_port": int, "cluster_id": str, ...}`
- `postgres/state.json`: `{"port": int}`
- `postgres/credentials.json` (mode 0600): `{"owner_password": str, "writer_password": str,
  "reader_password": str, "web_password": str, "superuser_password": str}`
- `kafka/credentials.json` (mode 0600, the remote-stations profile only):
  `{"admin": str, "worker.local": str, "sink.local": str, ...}`, SASL passwords
- `certs/ca.pem`: the deployment's CA certificate
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

from pydantic import SecretStr

from soundscape.errors import ServiceError
from soundscape.settings import Settings

Role = Literal["owner", "writer", "reader", "web"]


def kafka_state_file(settings: Settings) -> Path:
    return settings.state_dir / "kafka" / "state.json"


def kafka_credentials_file(settings: Settings) -> Path:
    return settings.state_dir / "kafka" / "credentials.json"


def ca_cert_file(settings: Settings) -> Path:
    return settings.state_dir / "certs" / "ca.pem"


#: The broker's own super user in the remote-stations profile: the operator's commands
#: (topics, stations, services) and the broker's controller and inter-broker traffic.
KAFKA_ADMIN_USER = "admin"
#: The name of this machine's own services as principals: `<role>.local`.
LOCAL_SERVICE_NAME = "local"
_WILDCARD = ("0.0.0.0", "::", "")


def local_kafka_secured(settings: Settings) -> bool:
    """True when the local broker has no anonymous listener (the remote-stations profile)."""
    return (settings.security.profile == "remote-stations"
            and not settings.kafka.bootstrap_servers)


def local_kafka_password(settings: Settings, user: str) -> str:
    """A SASL password of the local broker, from the credentials file `infra up` keeps."""
    path = kafka_credentials_file(settings)
    try:
        found = read_state(path)
    except ServiceError:  # unreadable by this account
        found = None
    password = (found or {}).get(user)
    if not isinstance(password, str) or not password:
        raise ServiceError(
            f"the local broker runs the remote-stations profile (no anonymous listener) and "
            f"{path} holds no password for {user!r} that this account can read",
            hint="run the command as the account that ran `soundscape infra up` (and run "
                 "`infra up` again to create missing principals), or configure "
                 "SOUNDSCAPE_KAFKA__SASL_USERNAME / _PASSWORD")
    return password


def as_local_service(settings: Settings, role: str) -> Settings:
    """The settings a service of this machine runs with: in the remote-stations profile
    its own principal `<role>.local` on the SASL_SSL listener, with its role's rights only;
    otherwise (single-host, an external broker, or credentials configured) unchanged."""
    if not local_kafka_secured(settings) or settings.kafka.sasl_username:
        return settings
    port = (read_state(kafka_state_file(settings)) or {}).get("stations_port")
    if port is None:
        raise ServiceError("no Kafka broker configured and none started by Soundscape",
                           hint="run `soundscape infra up`")
    user = f"{role}.{LOCAL_SERVICE_NAME}"
    host = settings.kafka.stations_host
    host = "127.0.0.1" if host in _WILDCARD else host
    kafka = settings.kafka.model_copy(update={
        "bootstrap_servers": f"{host}:{port}",
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_username": user,
        "sasl_password": SecretStr(local_kafka_password(settings, user)),
        "ssl_ca_location": ca_cert_file(settings),
    })
    return settings.model_copy(update={"kafka": kafka})


def postgres_state_file(settings: Settings) -> Path:
    return settings.state_dir / "postgres" / "state.json"


def web_state_file(settings: Settings) -> Path:
    """The web app `soundscape demo` leaves running: pid, host, port (`infra down` stops it)."""
    return settings.state_dir / "web" / "state.json"


def postgres_credentials_file(settings: Settings) -> Path:
    return settings.state_dir / "postgres" / "credentials.json"


def read_state(path: Path) -> dict[str, Any] | None:
    """A state file, or None if absent; a corrupt one is a clear error, not a traceback."""
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ServiceError(
            f"state file {path} is unreadable ({exc})",
            hint="run `soundscape infra reset` to start the services from a clean state",
        ) from None
    if not isinstance(data, dict):
        raise ServiceError(
            f"state file {path} does not hold a JSON object",
            hint="run `soundscape infra reset` to start the services from a clean state",
        )
    return data


def local_kafka_address(settings: Settings) -> str | None:
    """host:port of the broker `infra up` started (every node's, comma-separated, for a
    local cluster), or None if it never did."""
    state = read_state(kafka_state_file(settings)) or {}
    nodes = state.get("nodes") or []
    if nodes:
        return ",".join(f"{settings.kafka.host}:{node['port']}" for node in nodes)
    port = state.get("port")
    return f"{settings.kafka.host}:{port}" if port else None


def local_postgres_url(settings: Settings, role: Role = "writer",
                       database: str | None = None) -> str | None:
    """libpq URL of the local cluster for a role, or None if it was never started."""
    port = (read_state(postgres_state_file(settings)) or {}).get("port")
    if port is None:
        return None
    pg = settings.postgres
    configured = getattr(pg, f"{role}_password")
    if configured is not None:
        password = configured.get_secret_value()
    else:
        password = (read_state(postgres_credentials_file(settings)) or {}).get(f"{role}_password")
        if not password:
            return None
    user = getattr(pg, f"{role}_user")
    return (f"postgresql://{quote(user)}:{quote(password, safe='')}@{pg.host}:{port}/"
            f"{quote(database or pg.database)}")
