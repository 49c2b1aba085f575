"""Every dashboard panel's SQL, with Grafana's macros expanded for the dashboard's default
range, runs as the read-only role against the real schema filled by a demo run, returns
the columns the panel reads, and uses indexes: no sequential scan of a large partition
(plans seen by auto_explain, so queries inside functions count too)."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from grafana_testkit import DAYS, END, DemoDatabase

from soundscape.database import database_url
from soundscape.infra.grafana import dashboard_model as model
from soundscape.infra.grafana.macros import QueryContext, expand
from soundscape.infra.grafana.report import connect_reader, context_for, panel_context

#: A partition this large must not be read whole for a dashboard's default range.
LARGE_ROWS = 10_000
#: psycopg type OIDs: numbers, and the timestamps a time column may have.
NUMERIC = {20, 21, 23, 700, 701, 1700}
TIMESTAMPS = {1114, 1184}

SQL_PANELS = [(d, p) for d in model.DASHBOARDS for p in d.panels if p.sql]


def default_range(dashboard: model.Dashboard) -> tuple[Any, Any]:
    hours = int(re.fullmatch(r"now-(\d+)h", dashboard.time_from).group(1))  # type: ignore[union-attr]
    return END - timedelta(hours=hours), END


def run_explained(db: DemoDatabase, query: str) -> tuple[list[Any], list[tuple[Any, ...]], str]:
    """Run as the reader with auto_explain logging every plan, nested ones included."""
    plans: list[str] = []
    with db.connect_admin(db.name) as conn:  # a superuser may LOAD auto_explain
        for setting in ("LOAD 'auto_explain'", "SET auto_explain.log_min_duration = 0",
                        "SET auto_explain.log_nested_statements = on",
                        "SET client_min_messages = log", "SET timezone = 'UTC'",
                        f"SET ROLE {db.settings.postgres.reader_user}"):
            conn.execute(setting)
        conn.add_notice_handler(lambda notice: plans.append(notice.message_primary or ""))
        with conn.cursor() as cur:
            cur.execute(query)
            description = list(cur.description or ())
            rows = cur.fetchall()
    return description, rows, "\n".join(plans)


@pytest.fixture(scope="module")
def large_partitions(demo_db: DemoDatabase) -> set[str]:
    with demo_db.connect_admin(demo_db.name) as conn:
        found = {row[0] for row in conn.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_inherits i ON i.inhrelid = c.oid "
            "WHERE c.reltuples >= %s", (LARGE_ROWS,))}
    assert {n.split("_p")[0] for n in found} >= {"chunks", "detections", "station_heartbeats"}
    return found


def test_demo_run_filled_every_table(demo_db: DemoDatabase) -> None:
    summary = demo_db.summary
    assert summary.chunks > DAYS * 24 * 360 * 3.5  # four stations, one with a 2-h outage
    assert summary.detections > summary.chunks and summary.heartbeats > DAYS * 24 * 60 * 3.5
    assert summary.drift_alerts > 0 and summary.drift_reports > summary.drift_alerts


@pytest.mark.parametrize(("dashboard", "panel"), SQL_PANELS,
                         ids=[f"{d.uid}/{p.title}" for d, p in SQL_PANELS])
def test_panel_query(demo_db: DemoDatabase, large_partitions: set[str],
                     dashboard: model.Dashboard, panel: model.Panel) -> None:
    start, end = default_range(dashboard)
    with connect_reader(database_url(demo_db.settings, "reader")) as conn:
        ctx = context_for(conn, [dashboard], start, end)
    assert len(ctx.variables["station"]) == 4
    query = expand(panel.sql, panel_context(ctx, panel, max_points=500))
    description, rows, plans = run_explained(demo_db, query)

    assert [c.name for c in description] == list(panel.columns)
    assert rows, f"{panel.title}: no rows for the demo's last hours"
    if panel.kind == "timeseries":
        time_type = description[0].type_code
        assert time_type in NUMERIC | TIMESTAMPS
        values = [c for c in description[1:] if c.name != "metric"]
        assert values and all(c.type_code in NUMERIC for c in values), panel.title
        times = [r[0] for r in rows]
        assert times == sorted(times), "Grafana needs time_series rows in time order"
    if panel.kind in ("stat", "bargauge", "barchart"):
        assert description[-1].type_code in NUMERIC

    assert "Query Text" in plans, "auto_explain saw no plan"
    scanned = set(re.findall(r"Seq Scan on (\w+)", plans))
    assert not scanned & large_partitions, f"{panel.title} reads {scanned & large_partitions} whole"


@pytest.mark.parametrize("variable", [model.STATION_VAR, model.SPECIES_VAR],
                         ids=lambda v: v.name)
def test_variable_queries(demo_db: DemoDatabase, large_partitions: set[str],
                          variable: model.Variable) -> None:
    ctx = QueryContext(END - timedelta(hours=6), END)
    description, rows, plans = run_explained(demo_db, expand(variable.sql, ctx))
    values = [r[0] for r in rows]
    assert values == sorted(values) and len(values) >= 4
    assert not set(re.findall(r"Seq Scan on (\w+)", plans)) & large_partitions


def test_a_query_ignoring_the_range_is_caught(demo_db: DemoDatabase,
                                              large_partitions: set[str]) -> None:
    """The check above can fail: a filter no index serves reads the partitions whole."""
    _, _, plans = run_explained(demo_db, "SELECT count(*) FROM chunks WHERE top_probability > 0.5")
    assert set(re.findall(r"Seq Scan on (\w+)", plans)) & large_partitions
    _, _, nested = run_explained(
        demo_db, f"SELECT count(*) FROM coverage_gaps('{END - timedelta(hours=6)}', '{END}')")
    # A function's own plan is seen too (this one is inlined): it reads chunks by index.
    assert re.search(r"Index (Only )?Scan using \w+ on chunks_p\d+", nested), nested
