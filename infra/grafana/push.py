"""`soundscape grafana push`: datasources, folder and dashboards on a running Grafana.

The payloads are built here from the settings (pure functions, unit-tested), then sent
with grafana-client: each datasource is updated by uid or created, the folder made if
missing, each dashboard saved with overwrite, so pushing again updates in place. The
PostgreSQL datasource uses the read-only role; the Prometheus one (dead letters) is
pushed only when `grafana.prometheus_url` is set, else those panels are left out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from psycopg.conninfo import conninfo_to_dict

from soundscape.database import database_url
from soundscape.errors import ServiceError, UserError
from soundscape.infra.grafana.dashboard_model import DASHBOARDS, POSTGRES, PROMETHEUS, render
from soundscape.settings import Settings

FOLDER_UID = "soundscape"
POSTGRES_NAME = "Soundscape PostgreSQL"
PROMETHEUS_NAME = "Soundscape Prometheus"


def postgres_datasource(settings: Settings) -> dict[str, Any]:
    """The PostgreSQL datasource as the read-only role, reached at `postgres_address`."""
    params = conninfo_to_dict(database_url(settings, "reader"))
    address = settings.grafana.postgres_address or \
        f"{params.get('host', '127.0.0.1')}:{params.get('port', 5432)}"
    return {
        "uid": POSTGRES["uid"], "name": POSTGRES_NAME, "type": POSTGRES["type"],
        "access": "proxy", "url": address, "user": params.get("user", ""),
        "isDefault": True,
        "jsonData": {"database": params.get("dbname", settings.postgres.database),
                     "sslmode": params.get("sslmode", "disable"), "postgresVersion": 1500,
                     "timescaledb": False, "maxOpenConns": 10, "connMaxLifetime": 14400},
        "secureJsonData": {"password": params.get("password", "")},
    }


def prometheus_datasource(url: str) -> dict[str, Any]:
    return {"uid": PROMETHEUS["uid"], "name": PROMETHEUS_NAME, "type": PROMETHEUS["type"],
            "access": "proxy", "url": url, "isDefault": False,
            "jsonData": {"httpMethod": "POST", "timeInterval": "15s"}}


def dashboard_payload(dashboard_json: dict[str, Any], message: str) -> dict[str, Any]:
    """POST /api/dashboards/db: saved into the folder, replacing an older version."""
    return {"dashboard": dashboard_json | {"id": None}, "folderUid": FOLDER_UID,
            "overwrite": True, "message": message}


@dataclass
class PushPlan:
    datasources: list[dict[str, Any]]
    folder: dict[str, str]
    dashboards: list[dict[str, Any]] = field(default_factory=list)


def plan(settings: Settings, message: str = "soundscape grafana push") -> PushPlan:
    prometheus = settings.grafana.prometheus_url
    sources = [postgres_datasource(settings)]
    if prometheus:
        sources.append(prometheus_datasource(prometheus))
    return PushPlan(
        datasources=sources,
        folder={"uid": FOLDER_UID, "title": settings.grafana.folder},
        dashboards=[dashboard_payload(render(d, prometheus=bool(prometheus)), message)
                    for d in DASHBOARDS],
    )


def push(settings: Settings, url: str, token: str, progress: Any = None) -> list[str]:
    """Send the plan; returns one line per object saying what was done."""
    from grafana_client import GrafanaApi
    from grafana_client.client import (
        GrafanaClientError,
        GrafanaException,
        GrafanaUnauthorizedError,
    )

    steps = plan(settings)
    api = GrafanaApi.from_url(url, credential=token, timeout=settings.grafana.timeout_s)
    done: list[str] = []
    try:
        for source in steps.datasources:
            try:
                api.datasource.get_datasource_by_uid(source["uid"])
                api.datasource.update_datasource_by_uid(source["uid"], source)
                done.append(f"datasource {source['name']}: updated")
            except GrafanaClientError as exc:
                if getattr(exc, "status_code", None) != 404:
                    raise
                api.datasource.create_datasource(source)
                done.append(f"datasource {source['name']}: created")
        try:
            api.folder.get_folder(steps.folder["uid"])
        except GrafanaClientError as exc:
            if getattr(exc, "status_code", None) != 404:
                raise
            api.folder.create_folder(steps.folder["title"], uid=steps.folder["uid"])
            done.append(f"folder {steps.folder['title']}: created")
        for payload in steps.dashboards:
            result = api.dashboard.update_dashboard(payload)
            done.append(f"dashboard {payload['dashboard']['title']}: saved "
                        f"(version {result.get('version', '?')}, {url.rstrip('/')}"
                        f"{result.get('url', '')})")
            if progress is not None:
                progress()
    except GrafanaUnauthorizedError:
        raise UserError(f"Grafana at {url} refused the token",
                        hint="use a service account token with the Admin role") from None
    except GrafanaException as exc:
        raise ServiceError(f"Grafana at {url} answered: {exc}",
                           hint="check the URL, and that the token's role (Admin) may "
                                "manage datasources and dashboards") from None
    except OSError as exc:  # connection refused, DNS, TLS
        raise ServiceError(f"cannot reach Grafana at {url}: {exc}",
                           hint="is it running, and is the URL right (http://host:3000)?") from None
    return done
