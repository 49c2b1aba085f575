"""Where the services `soundscape infra up` started can be reached, read from their state
files, so that clients find a local broker or database without importing the room that
runs them.

The files (under `state_dir`, written by `infra/`; this module only reads them):
- `kafka/state.json`: `{"port": int, "controller_port": int, "cluster_id": str, ...}`
- `postgres/state.json`: `{"port": int}`
- `postgres/credentials.json` (mode 0600): `{"writer_password": str, "reader_password": str}`
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

from soundscape.errors import ServiceError
from soundscape.settings import Settings

Role = Literal["writer", "reader"]


def kafka_state_file(settings: Settings) -> Path:
    return settings.state_dir / "kafka" / "state.json"


def postgres_state_file(settings: Settings) -> Path:
    return settings.state_dir / "postgres" / "state.json"


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
    """host:port of the broker `infra up` started, or None if it never did."""
    port = (read_state(kafka_state_file(settings)) or {}).get("port")
    return f"{settings.kafka.host}:{port}" if port else None


def local_postgres_url(settings: Settings, role: Role = "writer",
                       database: str | None = None) -> str | None:
    """libpq URL of the local cluster for a role, or None if it was never started."""
    port = (read_state(postgres_state_file(settings)) or {}).get("port")
    if port is None:
        return None
    pg = settings.postgres
    configured = pg.writer_password if role == "writer" else pg.reader_password
    if configured is not None:
        password = configured.get_secret_value()
    else:
        password = (read_state(postgres_credentials_file(settings)) or {}).get(f"{role}_password")
        if not password:
            return None
    user = pg.writer_user if role == "writer" else pg.reader_user
    return (f"postgresql://{quote(user)}:{quote(password, safe='')}@{pg.host}:{port}/"
            f"{quote(database or pg.database)}")
