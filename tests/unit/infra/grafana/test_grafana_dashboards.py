"""The dashboards' model: valid Grafana JSON, the provisioned files in step with it,
variables and metrics that exist, and the push payloads built from the settings."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from prometheus_client import REGISTRY
from pydantic import SecretStr

from soundscape.app.cli import cli
from soundscape.errors import ServiceError
from soundscape.infra.grafana import dashboard_model as model
from soundscape.infra.grafana import push
from soundscape.infra.grafana.macros import QueryContext, expand
from soundscape.settings import Settings

GRAFANA = Path(model.__file__).parent


def test_provisioned_files_are_what_the_model_renders() -> None:
    files = sorted(p.name for p in model.DASHBOARDS_DIR.glob("*.json"))
    assert files == sorted(d.file_name for d in model.DASHBOARDS)
    for dashboard in model.DASHBOARDS:
        committed = (model.DASHBOARDS_DIR / dashboard.file_name).read_text()
        assert committed == model.dashboard_json(dashboard), (
            f"{dashboard.file_name} is stale: run `soundscape grafana build`")


@pytest.mark.parametrize("dashboard", model.DASHBOARDS, ids=lambda d: d.uid)
def test_dashboard_json_is_grafanas_model(dashboard: model.Dashboard) -> None:
    rendered = model.render(dashboard)
    assert rendered["uid"] == dashboard.uid and rendered["schemaVersion"] >= 36
    panels = rendered["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    for panel in panels:
        grid = panel["gridPos"]
        assert 0 <= grid["x"] and grid["x"] + grid["w"] <= 24, panel["title"]
        target = panel["targets"][0]
        assert target["datasource"] == panel["datasource"]
        if panel["datasource"] == model.POSTGRES:
            assert target["rawQuery"] and target["format"] in ("time_series", "table")
    names = [v["name"] for v in rendered["templating"]["list"]]
    assert "station" in names
    json.dumps(rendered)  # serialisable


@pytest.mark.parametrize("dashboard", model.DASHBOARDS, ids=lambda d: d.uid)
def test_queries_use_only_their_dashboards_variables(dashboard: model.Dashboard) -> None:
    start = datetime(2026, 6, 1, tzinfo=UTC)
    ctx = QueryContext(start, start + timedelta(hours=6), timedelta(minutes=1),
                       {v.name: ["x"] for v in dashboard.variables})
    for panel in dashboard.panels:
        if panel.sql:
            assert panel.columns, f"{panel.title}: declare the columns the panel reads"
            assert "$__timeFilter" in panel.sql or "$__timeFrom" in panel.sql \
                or panel.title == "Stations: last seen", f"{panel.title} ignores the range"
            expand(panel.sql, ctx)  # raises on a variable the dashboard lacks
    for variable in dashboard.variables:
        if variable.sql:
            expand(variable.sql, ctx)


def test_prometheus_panels_use_metrics_the_services_export() -> None:
    import soundscape.processors.drift.metrics  # noqa: F401 - registers its metrics
    import soundscape.sinks.metrics  # noqa: F401

    families = list(REGISTRY.collect())
    exported = {m.name for m in families} | {
        f"{m.name}_total" for m in families if m.type == "counter"}
    promql = [p for d in model.DASHBOARDS for p in d.panels if p.promql]
    assert promql
    for panel in promql:
        metric = panel.promql.split("(")[-1].split("{")[0]
        assert metric in exported, f"{panel.title}: {metric} is not exported"
    without = model.render(model.PIPELINE, prometheus=False)
    assert not [p for p in without["panels"] if p["datasource"] == model.PROMETHEUS]


def test_provisioning_files_name_the_model_datasources() -> None:
    text = (GRAFANA / "provisioning" / "datasources" / "soundscape.yaml").read_text()
    for source in (model.POSTGRES, model.PROMETHEUS):
        assert f"uid: {source['uid']}" in text and f"type: {source['type']}" in text
    providers = (GRAFANA / "provisioning" / "dashboards" / "soundscape.yaml").read_text()
    assert f"folderUid: {push.FOLDER_UID}" in providers
    compose = (GRAFANA / "compose.yaml").read_text()
    assert "./dashboards:/var/lib/grafana/dashboards/soundscape" in compose
    assert "/var/lib/grafana/dashboards/soundscape" in providers


def external(**grafana: object) -> Settings:
    postgres = Settings().postgres.model_copy(update={
        "url": SecretStr("postgresql://soundscape_writer:w@db.example:5433/field"),
        "reader_url": SecretStr(
            "postgresql://soundscape_reader:r%40d@db.example:5433/field?sslmode=require"),
    })
    return Settings(postgres=postgres).model_copy(
        update={"grafana": Settings().grafana.model_copy(update=grafana)})


def test_push_plan_uses_the_read_only_role_and_overwrites_dashboards() -> None:
    steps = push.plan(external())
    [source] = steps.datasources  # no Prometheus URL: no Prometheus datasource
    assert source["uid"] == model.POSTGRES["uid"] and source["type"] == model.POSTGRES["type"]
    assert source["url"] == "db.example:5433" and source["user"] == "soundscape_reader"
    assert source["secureJsonData"] == {"password": "r@d"}
    assert source["jsonData"]["database"] == "field" and source["jsonData"]["sslmode"] == "require"
    assert steps.folder == {"uid": "soundscape", "title": "Soundscape"}
    assert [p["dashboard"]["uid"] for p in steps.dashboards] == [d.uid for d in model.DASHBOARDS]
    for payload in steps.dashboards:
        assert payload["overwrite"] and payload["folderUid"] == "soundscape"
        assert payload["dashboard"]["id"] is None
        assert not [p for p in payload["dashboard"]["panels"]
                    if p["datasource"] == model.PROMETHEUS]


def test_push_plan_with_prometheus_and_another_address() -> None:
    steps = push.plan(external(prometheus_url="http://prom:9090",
                               postgres_address="10.0.0.5:5432"))
    assert [s["uid"] for s in steps.datasources] == ["soundscape-postgres", "soundscape-prometheus"]
    assert steps.datasources[0]["url"] == "10.0.0.5:5432"
    assert steps.datasources[1]["url"] == "http://prom:9090"
    pipeline = next(p for p in steps.dashboards if p["dashboard"]["uid"] == "soundscape-pipeline")
    assert [p for p in pipeline["dashboard"]["panels"] if p["datasource"] == model.PROMETHEUS]


def test_push_to_an_unreachable_grafana_is_one_clear_error() -> None:
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ServiceError, match="cannot reach Grafana"):
        push.push(external(timeout_s=2), f"http://127.0.0.1:{port}", "token")


def test_push_command_needs_url_and_token_and_dry_run_masks_the_password() -> None:
    env = {"SOUNDSCAPE_POSTGRES__URL": "postgresql://w:w@db:5432/soundscape",
           "SOUNDSCAPE_POSTGRES__READER_URL": "postgresql://r:secret@db:5432/soundscape"}
    result = CliRunner().invoke(cli, ["grafana", "push"], env=env)
    assert result.exit_code != 0 and "needs a URL and a token" in str(result.exception)
    result = CliRunner().invoke(cli, ["grafana", "push", "--dry-run"], env=env)
    assert result.exit_code == 0, result.output
    assert "secret" not in result.output and '"password": "***"' in result.output
    assert len(json.loads(result.output)["dashboards"]) == len(model.DASHBOARDS)
