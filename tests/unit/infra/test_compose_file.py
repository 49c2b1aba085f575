"""docker-compose.yml against the code it runs: its variables are settings, every
long-running service is health-checked on a port of its own, and Grafana's definition
is infra/grafana's (one source). The stack itself runs in tests/integration/infra/test_compose.py.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from soundscape.settings import Settings

ROOT = Path(__file__).resolve().parents[3]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
GRAFANA = ROOT / "infra" / "grafana"
PORT_DEFAULT = re.compile(r"\$\{(\w+):-(\d+)\}")


def names_a_setting(variable: str) -> bool:
    """SOUNDSCAPE_A__B is the field b of the section a of Settings (pydantic-settings)."""
    model: type[BaseModel] = Settings
    *sections, last = variable.removeprefix("SOUNDSCAPE_").lower().split("__")
    for name in sections:
        field = model.model_fields.get(name)
        if field is None or not (isinstance(field.annotation, type)
                                 and issubclass(field.annotation, BaseModel)):
            return False
        model = field.annotation
    return last in model.model_fields


def test_names_a_setting_refuses_unknown_names() -> None:
    assert names_a_setting("SOUNDSCAPE_DRIFT__DATA_DIR")
    assert not names_a_setting("SOUNDSCAPE_DRIFT__DATADIR")
    assert not names_a_setting("SOUNDSCAPE_LOG_LEVEL__X")


def test_every_variable_of_the_project_services_is_a_setting() -> None:
    project = {name: service for name, service in SERVICES.items()
               if re.match(r"\$\{SOUNDSCAPE_(GPU_)?IMAGE:", str(service.get("image")))}
    assert set(project) == {"certs", "setup", "admin", "worker", "worker-gpu", "sink", "clips",
                            "drift", "web", "notify", "replay", "worker-shadow", "sink-shadow"}
    variables = {key for service in project.values() for key in service["environment"]}
    assert {"SOUNDSCAPE_METRICS_PORT", "SOUNDSCAPE_DRIFT__DATA_DIR"} <= variables
    assert [v for v in variables if not names_a_setting(v)] == []


def test_long_running_services_are_health_checked_on_ports_of_their_own() -> None:
    ports: dict[str, str] = {}
    for name, service in SERVICES.items():
        if service.get("restart") == "no" or "extends" in service:
            continue  # one-shot jobs; Grafana and Prometheus come from infra/grafana
        check = service.get("healthcheck") or {}
        assert check.get("test") and not check.get("disable"), name
        if "SOUNDSCAPE_METRICS_PORT" in str(check["test"]):  # the project's /healthz
            port = PORT_DEFAULT.fullmatch(service["environment"]["SOUNDSCAPE_METRICS_PORT"])
            assert port is not None, name
            ports[name] = port.group(2)
    assert set(ports) == {"worker", "worker-gpu", "sink", "clips", "notify", "drift",
                          "worker-shadow", "sink-shadow"}
    assert len(set(ports.values())) == len(ports), ports
    for service in SERVICES.values():
        assert service.get("network_mode") == "host" or "extends" in service


def test_prometheus_scrapes_the_ports_compose_gives() -> None:
    scrape = yaml.safe_load((GRAFANA / "prometheus.yml").read_text())["scrape_configs"]
    targets = {job["job_name"].removeprefix("soundscape-"):
               {t for c in job["static_configs"] for t in c["targets"]} for job in scrape}
    for name in ("worker", "worker-gpu", "sink", "clips", "drift", "worker-shadow", "sink-shadow"):
        port = PORT_DEFAULT.fullmatch(SERVICES[name]["environment"]["SOUNDSCAPE_METRICS_PORT"])
        assert port is not None
        job = "shadow" if name.endswith("-shadow") else name.removesuffix("-gpu")
        assert f"127.0.0.1:{port.group(2)}" in targets[job], name


def test_grafana_is_infra_grafanas_pointed_at_this_stack_with_the_read_only_role() -> None:
    separate = (GRAFANA / "compose.yaml").read_text()
    assert ":?" not in separate, "a required variable there would break docker-compose.yml"
    grafana_services = yaml.safe_load(separate)["services"]
    for name in ("grafana", "prometheus"):
        assert SERVICES[name]["extends"] == {"file": "infra/grafana/compose.yaml",
                                             "service": name}
        assert SERVICES[name]["profiles"] == ["grafana"]
        assert name in grafana_services
    env = SERVICES["grafana"]["environment"]
    assert env["SOUNDSCAPE_PG_READER_USER"] == Settings().postgres.reader_user
    assert env["SOUNDSCAPE_PG_ADDRESS"] == "127.0.0.1:${POSTGRES_PORT:-15432}"
    assert "SOUNDSCAPE_READER_PASSWORD" in env["SOUNDSCAPE_PG_READER_PASSWORD"]
    assert set(COMPOSE["volumes"]) >= {"kafka-data", "postgres-data", "drift-state",
                                       "grafana-data"}
