"""The four dashboards, defined once in Python and rendered to Grafana's JSON model.

`soundscape grafana build` writes them to infra/grafana/dashboards/ (what docker-compose
provisions; a test keeps the files in step with this module), `soundscape grafana push`
sends the same JSON through the HTTP API, `soundscape report` plots the panels marked
for it, and the tests run every panel's SQL against the real schema. Each panel names
the columns it reads (`columns`): its field overrides, map coordinates and bar axes use
those names, and the tests hold the queries to them.

Every query takes the dashboard's time range through Grafana's macros, on the column
the table is partitioned and indexed by, so PostgreSQL reads only the partitions and
index ranges of the range shown.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from soundscape.drift_checks import CHECKS

POSTGRES = {"type": "grafana-postgresql-datasource", "uid": "soundscape-postgres"}
PROMETHEUS = {"type": "prometheus", "uid": "soundscape-prometheus"}
DASHBOARDS_DIR = Path(__file__).parent / "dashboards"
SCHEMA_VERSION = 39

STATIONS = "station_id IN ($station)"


@dataclass(frozen=True)
class Panel:
    title: str
    kind: str  # timeseries, table, stat, bargauge, barchart, geomap
    sql: str = ""  # PostgreSQL, with Grafana macros and variables
    columns: tuple[str, ...] = ()  # what the query returns, in order
    promql: str = ""  # a Prometheus panel instead (dead letters)
    unit: str = "short"
    units: dict[str, str] = field(default_factory=dict)  # per column
    width: int = 12
    height: int = 8
    min_interval: str = "1m"  # chunks are 10 s: finer buckets are noise
    description: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    report: bool = False  # plotted by `soundscape report`

    @property
    def format(self) -> str:
        return "time_series" if self.kind == "timeseries" else "table"


@dataclass(frozen=True)
class Variable:
    name: str
    label: str
    sql: str = ""  # a query variable; else custom values
    values: tuple[str, ...] = ()


@dataclass(frozen=True)
class Dashboard:
    uid: str
    title: str
    description: str
    panels: tuple[Panel, ...]
    variables: tuple[Variable, ...]
    time_from: str = "now-6h"

    @property
    def file_name(self) -> str:
        return f"{self.uid}.json"


STATION_VAR = Variable("station", "Station", "SELECT station_id FROM stations ORDER BY 1")
SPECIES_VAR = Variable(
    "species", "Species",
    "SELECT DISTINCT label FROM detections WHERE $__timeFilter(chunk_start) ORDER BY 1",
)
CHECK_VAR = Variable("check", "Drift check", values=tuple(CHECKS))


def _series(by: str, table: str, value: str, name: str, time_col: str = "chunk_start",
            where: str = "") -> str:
    """One series per station (or label): `value` per $__interval bucket."""
    extra = f" AND {where}" if where else ""
    return (f"SELECT $__timeGroupAlias({time_col}, $__interval), {by} AS metric, "
            f"{value} AS {name}\nFROM {table}\n"
            f"WHERE $__timeFilter({time_col}) AND {STATIONS}{extra}\n"
            "GROUP BY 1, 2 ORDER BY 1, 2")


def _percentiles(column: str, table: str = "chunks", where: str = "") -> str:
    extra = f" AND {where}" if where else ""
    quantiles = ", ".join(
        f"percentile_cont({q}) WITHIN GROUP (ORDER BY {column}) AS p{round(q * 100)}"
        for q in (0.5, 0.95, 0.99))
    return (f"SELECT $__timeGroupAlias(chunk_start, $__interval), {quantiles}\n"
            f"FROM {table}\nWHERE $__timeFilter(chunk_start) AND {STATIONS}{extra}\n"
            "GROUP BY 1 ORDER BY 1")


def _heartbeats(title: str, aggregate: str, name: str, **panel: Any) -> Panel:
    """A per-station series of one heartbeat field."""
    return Panel(title, "timeseries", columns=("time", "metric", name),
                 sql=_series("station_id", "station_heartbeats", aggregate, name, "sent_at"),
                 **panel)


SPECIES = "label IN ($species)"

OVERVIEW = Dashboard(
    "soundscape-overview", "Soundscape: overview",
    "What was heard, where and when.",
    variables=(STATION_VAR, SPECIES_VAR),
    panels=(
        Panel("Chunks scored", "stat", width=6, height=4, columns=("chunks",),
              sql=f"SELECT count(*) AS chunks FROM chunks\n"
                  f"WHERE $__timeFilter(chunk_start) AND {STATIONS}"),
        Panel("Detections", "stat", width=6, height=4, columns=("detections",),
              sql=f"SELECT count(*) AS detections FROM detections\n"
                  f"WHERE $__timeFilter(chunk_start) AND {STATIONS} AND {SPECIES}"),
        Panel("Species heard", "stat", width=6, height=4, columns=("species",),
              sql=f"SELECT count(DISTINCT label) AS species FROM detections\n"
                  f"WHERE $__timeFilter(chunk_start) AND {STATIONS} AND {SPECIES}"),
        Panel("Stations reporting", "stat", width=6, height=4, columns=("stations",),
              sql=f"SELECT count(DISTINCT station_id) AS stations FROM chunks\n"
                  f"WHERE $__timeFilter(chunk_start) AND {STATIONS}"),
        Panel("Detections over time by species", "timeseries", width=24, height=9,
              columns=("time", "metric", "detections"), report=True, min_interval="5m",
              sql=_series("label", "detections", "count(*)", "detections", where=SPECIES),
              options={"stacking": "normal", "drawStyle": "bars"}),
        Panel("Top species", "bargauge", width=10, height=10, columns=("label", "detections"),
              report=True,
              sql=f"SELECT label, count(*) AS detections FROM detections\n"
                  f"WHERE $__timeFilter(chunk_start) AND {STATIONS} AND {SPECIES}\n"
                  "GROUP BY label ORDER BY detections DESC, label LIMIT 20"),
        Panel("Stations", "geomap", width=14, height=10, report=True,
              columns=("station_id", "name", "latitude", "longitude", "detections"),
              description="Stations with a location (set stations.latitude/longitude); "
                          "marker colour: detections in the range.",
              sql="SELECT s.station_id, coalesce(s.name, s.station_id) AS name, s.latitude,\n"
                  "       s.longitude, count(d.label) AS detections\n"
                  "FROM stations s\n"
                  "LEFT JOIN detections d ON d.station_id = s.station_id\n"
                  "     AND $__timeFilter(d.chunk_start) AND d.label IN ($species)\n"
                  "WHERE s.station_id IN ($station) AND s.latitude IS NOT NULL\n"
                  "GROUP BY s.station_id ORDER BY s.station_id"),
    ),
)

STATION_HEALTH = Dashboard(
    "soundscape-stations", "Soundscape: station health",
    "Is every station recording, sending and healthy?",
    variables=(STATION_VAR,),
    panels=(
        Panel("Stations: last seen", "table", width=24, height=7, report=True,
              columns=("station_id", "last_chunk", "last_heartbeat", "heartbeat_age_s",
                       "spool_depth", "disk_free_bytes", "cpu_temperature_c",
                       "clock_offset_ms", "software_version"),
              units={"heartbeat_age_s": "s", "disk_free_bytes": "bytes",
                     "cpu_temperature_c": "celsius", "clock_offset_ms": "ms"},
              sql="SELECT s.station_id, s.last_seen AS last_chunk, h.sent_at AS last_heartbeat,\n"
                  "       extract(epoch FROM h.age) AS heartbeat_age_s, h.spool_depth,\n"
                  "       h.disk_free_bytes, h.cpu_temperature_c, h.clock_offset_ms,\n"
                  "       h.software_version\n"
                  "FROM stations s LEFT JOIN latest_heartbeats h USING (station_id)\n"
                  "WHERE s.station_id IN ($station) ORDER BY s.station_id"),
        Panel("Chunks received", "timeseries", columns=("time", "metric", "chunks"),
              min_interval="5m", report=True,
              description="Per station: a dip is a gap (the station or its link was down).",
              sql=_series("station_id", "chunks", "count(*)", "chunks")),
        _heartbeats("Heartbeats received", "count(*)", "heartbeats", min_interval="5m"),
        _heartbeats("Spool depth (chunks waiting on the station)", "max(spool_depth)",
                    "spool_depth", report=True),
        _heartbeats("Disk free", "min(disk_free_bytes)", "disk_free_bytes", unit="bytes"),
        _heartbeats("CPU temperature", "max(cpu_temperature_c)", "cpu_temperature_c",
                    unit="celsius"),
        _heartbeats("Clock offset", "avg(clock_offset_ms)", "clock_offset_ms", unit="ms"),
        Panel("Chunks scored on the station (edge results stored)", "timeseries",
              columns=("time", "metric", "edge_results"), min_interval="5m",
              description="Stations with station.edge_bundle: their own results, as "
                          "`sink --edge` stored them (edge_results). Beside 'Chunks "
                          "received', a station whose link is too thin for its audio shows "
                          "here only.",
              sql=_series("station_id", "edge_results", "count(*)", "edge_results")),
        _heartbeats("Chunks the station could not score (scoring behind)",
                    "max(edge_skipped) - min(edge_skipped)", "edge_skipped",
                    description="Growth of the heartbeats' edge_skipped per bucket: chunks "
                                "the station's scoring had no room for (their audio is kept). "
                                "Above zero, the station's CPU is too slow for its bundle."),
        Panel("Gaps in coverage", "table", width=24, height=8,
              columns=("station_id", "gap_start", "gap_end", "missing_s"),
              units={"missing_s": "s"}, report=True,
              description="Time no stored chunk covers (coverage_gaps): outages, lost or "
                          "dead-lettered chunks.",
              sql="SELECT station_id, gap_start, gap_end, extract(epoch FROM missing) AS missing_s\n"
                  "FROM coverage_gaps($__timeFrom(), $__timeTo())\n"
                  "WHERE station_id IN ($station) ORDER BY gap_start DESC LIMIT 500"),
    ),
)

LIVE = "source = 'live'"

PIPELINE = Dashboard(
    "soundscape-pipeline", "Soundscape: pipeline",
    "Throughput, latency per stage, consumer lag, batches and dead letters.",
    variables=(STATION_VAR,),
    panels=(
        Panel("Results written per second", "timeseries", columns=("time", "results_per_s"),
              report=True, unit="reqps",
              description="Results the sink stored, by the time it stored them (replays too).",
              sql="SELECT $__timeGroupAlias(written_at, $__interval),\n"
                  "       count(*) / ($__interval_ms / 1000.0) AS results_per_s\n"
                  f"FROM chunks WHERE $__timeFilter(written_at) AND {STATIONS}\n"
                  "GROUP BY 1 ORDER BY 1"),
        Panel("Latency, capture to stored (live)", "timeseries", unit="ms", report=True,
              columns=("time", "p50", "p95", "p99"),
              sql=_percentiles("total_ms", "chunk_latencies", LIVE)),
        Panel("Latency per stage (live)", "table", columns=("stage", "p50", "p95", "p99"),
              unit="ms", report=True,
              sql="SELECT s.stage, "
                  + ", ".join(f"percentile_cont({q}) WITHIN GROUP (ORDER BY s.ms) AS p{p}"
                              for q, p in ((0.5, 50), (0.95, 95), (0.99, 99)))
                  + "\nFROM chunk_latencies l CROSS JOIN LATERAL (VALUES\n"
                  "    (1, 'capture to publish', l.capture_to_publish_ms),\n"
                  "    (2, 'publish to consume', l.publish_to_consume_ms),\n"
                  "    (3, 'consume to score', l.consume_to_score_ms),\n"
                  "    (4, 'score to write', l.score_to_write_ms),\n"
                  "    (5, 'total', l.total_ms)) AS s(step, stage, ms)\n"
                  f"WHERE $__timeFilter(l.chunk_start) AND l.{STATIONS} AND l.{LIVE}\n"
                  "GROUP BY s.step, s.stage ORDER BY s.step"),
        Panel("Consumer lag (time waiting in Kafka, p95, live)", "timeseries", unit="ms",
              columns=("time", "workers", "sink"),
              description="How long results waited for each consumer group: publish to "
                          "consume (inference workers), score to write (sink).",
              sql="SELECT $__timeGroupAlias(chunk_start, $__interval),\n"
                  "       percentile_cont(0.95) WITHIN GROUP (ORDER BY publish_to_consume_ms)"
                  " AS workers,\n"
                  "       percentile_cont(0.95) WITHIN GROUP (ORDER BY score_to_write_ms)"
                  " AS sink\n"
                  f"FROM chunk_latencies WHERE $__timeFilter(chunk_start) AND {STATIONS}"
                  f" AND {LIVE}\nGROUP BY 1 ORDER BY 1"),
        Panel("Inference batch sizes", "timeseries", columns=("time", "mean", "max"),
              sql="SELECT $__timeGroupAlias(chunk_start, $__interval), avg(batch_size) AS mean,"
                  " max(batch_size) AS max\n"
                  f"FROM chunks WHERE $__timeFilter(chunk_start) AND {STATIONS}\n"
                  "GROUP BY 1 ORDER BY 1"),
        Panel("Worker time per chunk (mean)", "timeseries", unit="ms",
              columns=("time", "decode", "features", "inference"),
              sql="SELECT $__timeGroupAlias(chunk_start, $__interval), avg(decode_ms) AS decode,"
                  "\n       avg(features_ms) AS features, avg(inference_ms) AS inference\n"
                  f"FROM chunks WHERE $__timeFilter(chunk_start) AND {STATIONS}\n"
                  "GROUP BY 1 ORDER BY 1"),
        Panel("Results per worker", "table",
              columns=("worker_id", "results", "mean_batch", "mean_inference_ms"),
              sql="SELECT worker_id, count(*) AS results, avg(batch_size) AS mean_batch,\n"
                  "       avg(inference_ms) AS mean_inference_ms\n"
                  f"FROM chunks WHERE $__timeFilter(chunk_start) AND {STATIONS}\n"
                  "GROUP BY worker_id ORDER BY results DESC"),
        Panel("Chunks without a result", "table", columns=("station_id", "gaps", "missing_chunks"),
              description="Coverage gaps per station: chunks never stored, whether lost on "
                          "the way or dead-lettered (the audio DLQ).",
              sql="SELECT station_id, count(*) AS gaps,\n"
                  "       round(sum(extract(epoch FROM missing)) / 10) AS missing_chunks\n"
                  "FROM coverage_gaps($__timeFrom(), $__timeTo())\n"
                  "WHERE station_id IN ($station) GROUP BY station_id ORDER BY station_id"),
        Panel("Dead letters (sink)", "timeseries", min_interval="",
              promql='sum(increase(soundscape_sink_messages_total{outcome="dead_lettered"}'
                     "[$__rate_interval]))",
              description="Results the sink could not store (soundscape.results.dlq.v1); "
                          "needs the Prometheus datasource."),
        Panel("Unreadable detections (drift checks)", "timeseries", min_interval="",
              promql='sum(increase(soundscape_drift_chunks_total{outcome="invalid"}'
                     "[$__rate_interval]))",
              description="Detection messages the drift checks could not parse; needs the "
                          "Prometheus datasource."),
    ),
)

DRIFT = Dashboard(
    "soundscape-drift", "Soundscape: model and drift",
    "Is the model still fitting its stations? Confidence, input levels, drift checks.",
    variables=(STATION_VAR, CHECK_VAR),
    time_from="now-24h",
    panels=(
        Panel("Top confidence (p10, p50, p90)", "timeseries", unit="percentunit",
              columns=("time", "p10", "p50", "p90"), min_interval="10m", report=True,
              sql="SELECT $__timeGroupAlias(chunk_start, $__interval),\n"
                  + ",\n".join(f"       percentile_cont({q}) WITHIN GROUP (ORDER BY "
                               f"top_probability) AS p{round(q * 100)}" for q in (0.1, 0.5, 0.9))
                  + f"\nFROM chunks WHERE $__timeFilter(chunk_start) AND {STATIONS}\n"
                  "GROUP BY 1 ORDER BY 1"),
        Panel("Confidence distribution", "barchart", columns=("confidence", "chunks"),
              report=True, options={"xField": "confidence"},
              sql="SELECT to_char(b / 10.0, 'FM0.0') || '-' || to_char((b + 1) / 10.0, 'FM0.0')"
                  " AS confidence,\n       count(*) AS chunks\n"
                  "FROM (SELECT least(floor(top_probability * 10), 9)::int AS b FROM chunks\n"
                  f"      WHERE $__timeFilter(chunk_start) AND {STATIONS}) AS bucketed\n"
                  "GROUP BY b ORDER BY b"),
        Panel("Noise floor (median)", "timeseries", unit="dB", min_interval="10m",
              columns=("time", "metric", "noise_floor_dbfs"), report=True,
              sql=_series("station_id", "chunks",
                          "percentile_cont(0.5) WITHIN GROUP (ORDER BY noise_floor_dbfs)",
                          "noise_floor_dbfs")),
        Panel("Level (median RMS)", "timeseries", unit="dB", min_interval="10m",
              columns=("time", "metric", "rms_dbfs"),
              sql=_series("station_id", "chunks",
                          "percentile_cont(0.5) WITHIN GROUP (ORDER BY rms_dbfs)", "rms_dbfs")),
        Panel("Drift: value / threshold (past 1: alerts when significant)", "timeseries",
              width=24, columns=("time", "metric", "ratio"), report=True, min_interval="",
              options={"threshold": 1.0},
              description="Each check's value over its threshold, per station and window "
                          "(at the window's end). All checks but clipping, gaps and silent "
                          "also need significance to alert: a small window can pass 1 "
                          "without alerting.",
              sql="SELECT window_end AS time, station_id || ' ' || check_name AS metric,\n"
                  "       abs(value) / nullif(threshold, 0) AS ratio\n"
                  "FROM drift_reports\n"
                  f"WHERE $__timeFilter(window_start) AND {STATIONS}"
                  " AND check_name IN ($check)\nORDER BY 1, 2"),
        Panel("Drift alerts", "table", width=16, height=9, report=True,
              columns=("window_start", "window_end", "station_id", "check_name", "kind",
                       "value", "threshold", "detail"),
              sql="SELECT window_start, window_end, station_id, check_name, kind, value,"
                  " threshold, detail\n"
                  "FROM drift_reports\n"
                  f"WHERE alert AND $__timeFilter(window_start) AND {STATIONS}"
                  " AND check_name IN ($check)\nORDER BY window_start DESC, station_id LIMIT 200"),
        Panel("Alerts by check", "bargauge", width=8, height=9, columns=("check_name", "alerts"),
              sql="SELECT check_name, count(*) AS alerts FROM drift_reports\n"
                  f"WHERE alert AND $__timeFilter(window_start) AND {STATIONS}"
                  " AND check_name IN ($check)\nGROUP BY check_name ORDER BY alerts DESC"),
        Panel("Live vs shadow: share of chunks with a detection, per bundle version",
              "timeseries", width=24, unit="percentunit", min_interval="10m",
              columns=("time", "metric", "detected_share"),
              description="The live results per bundle version beside each candidate scored "
                          "in shadow (`worker --shadow`) on the same chunks: a candidate that "
                          "detects far more or less than the live bundle shows here before "
                          "it is promoted. `soundscape models compare` gives the details.",
              sql="SELECT $__timeGroupAlias(chunk_start, $__interval), metric,\n"
                  "       avg(detected) AS detected_share\n"
                  "FROM (SELECT chunk_start, 'live ' || bundle_version AS metric,\n"
                  "             (detection_count > 0)::int AS detected FROM chunks\n"
                  f"      WHERE $__timeFilter(chunk_start) AND {STATIONS}\n"
                  "      UNION ALL\n"
                  "      SELECT chunk_start, 'shadow ' || bundle_version,\n"
                  "             (detected <> '{}'::jsonb)::int FROM shadow_results\n"
                  f"      WHERE $__timeFilter(chunk_start) AND {STATIONS}) AS scored\n"
                  "GROUP BY 1, 2 ORDER BY 1, 2"),
    ),
)

DASHBOARDS: tuple[Dashboard, ...] = (OVERVIEW, STATION_HEALTH, PIPELINE, DRIFT)


# ---- Grafana's JSON model ------------------------------------------------------------------
def _variable_json(var: Variable) -> dict[str, Any]:
    common = {"name": var.name, "label": var.label, "multi": True, "includeAll": True,
              "current": {"selected": True, "text": ["All"], "value": ["$__all"]}}
    if var.sql:
        return common | {"type": "query", "datasource": POSTGRES, "query": var.sql,
                         "definition": var.sql, "refresh": 2, "sort": 1}
    values = ",".join(var.values)
    return common | {"type": "custom", "query": values, "options": [
        {"text": v, "value": v, "selected": False} for v in var.values]}


def _field_config(panel: Panel) -> dict[str, Any]:
    overrides = [
        {"matcher": {"id": "byName", "options": column},
         "properties": [{"id": "unit", "value": unit}]}
        for column, unit in panel.units.items()
    ]
    defaults: dict[str, Any] = {"unit": panel.unit}
    if panel.kind == "timeseries":
        custom = {"drawStyle": panel.options.get("drawStyle", "line"), "lineWidth": 1,
                  "fillOpacity": 60 if panel.options.get("drawStyle") == "bars" else 10,
                  "showPoints": "never", "spanNulls": False,
                  "stacking": {"mode": panel.options.get("stacking", "none"), "group": "A"}}
        if "threshold" in panel.options:
            custom["thresholdsStyle"] = {"mode": "dashed"}
            defaults["thresholds"] = {"mode": "absolute", "steps": [
                {"color": "green", "value": None},
                {"color": "red", "value": panel.options["threshold"]}]}
        defaults["custom"] = custom
    return {"defaults": defaults, "overrides": overrides}


def _options(panel: Panel) -> dict[str, Any]:
    if panel.kind == "timeseries":
        return {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                "tooltip": {"mode": "multi", "sort": "desc"}}
    if panel.kind == "stat":
        return {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                "colorMode": "value", "graphMode": "none", "textMode": "auto"}
    if panel.kind == "bargauge":
        return {"reduceOptions": {"calcs": [], "fields": "", "values": True},
                "orientation": "horizontal", "displayMode": "gradient", "showUnfilled": True}
    if panel.kind == "barchart":
        return {"xField": panel.options["xField"], "orientation": "vertical",
                "showValue": "auto", "legend": {"showLegend": False}}
    if panel.kind == "geomap":
        station, _, lat, lon, colour = panel.columns
        return {
            "view": {"id": "fit", "lat": 0, "lon": 0, "zoom": 5},
            "controls": {"showZoom": True, "mouseWheelZoom": True},
            "basemap": {"type": "default", "name": "Basemap"},
            "layers": [{
                "type": "markers", "name": "Stations", "tooltip": True,
                "location": {"mode": "coords", "latitude": lat, "longitude": lon},
                "config": {"showLegend": True, "style": {
                    "size": {"fixed": 8}, "color": {"field": colour},
                    "text": {"mode": "field", "field": station},
                    "textConfig": {"fontSize": 11, "offsetY": -14}}},
            }],
        }
    return {"showHeader": True, "cellHeight": "sm"}


def _target(panel: Panel) -> dict[str, Any]:
    if panel.promql:
        return {"refId": "A", "datasource": PROMETHEUS, "expr": panel.promql,
                "legendFormat": "{{outcome}}", "range": True}
    return {"refId": "A", "datasource": POSTGRES, "format": panel.format, "rawQuery": True,
            "editorMode": "code", "rawSql": panel.sql}


def _layout(panels: tuple[Panel, ...]) -> list[dict[str, int]]:
    """Left to right, wrapping at Grafana's 24 columns."""
    positions, x, y, row_height = [], 0, 0, 0
    for panel in panels:
        if x + panel.width > 24:
            x, y, row_height = 0, y + row_height, 0
        positions.append({"x": x, "y": y, "w": panel.width, "h": panel.height})
        x += panel.width
        row_height = max(row_height, panel.height)
    return positions


def render(dashboard: Dashboard, prometheus: bool = True) -> dict[str, Any]:
    """Grafana's JSON model; without `prometheus`, its panels are left out."""
    panels = [p for p in dashboard.panels if prometheus or not p.promql]
    return {
        "uid": dashboard.uid,
        "title": dashboard.title,
        "description": dashboard.description,
        "tags": ["soundscape"],
        "timezone": "utc",
        "editable": True,
        "graphTooltip": 1,
        "refresh": "1m",
        "schemaVersion": SCHEMA_VERSION,
        "time": {"from": dashboard.time_from, "to": "now"},
        "templating": {"list": [_variable_json(v) for v in dashboard.variables]},
        "panels": [
            {
                "id": index + 1,
                "type": panel.kind,
                "title": panel.title,
                "description": panel.description,
                "gridPos": position,
                "datasource": PROMETHEUS if panel.promql else POSTGRES,
                "interval": panel.min_interval,
                "targets": [_target(panel)],
                "fieldConfig": _field_config(panel),
                "options": _options(panel),
            }
            for index, (panel, position) in enumerate(zip(panels, _layout(tuple(panels)),
                                                          strict=True))
        ],
    }


def dashboard_json(dashboard: Dashboard, prometheus: bool = True) -> str:
    return json.dumps(render(dashboard, prometheus), indent=2, ensure_ascii=False) + "\n"


def write_all(folder: Path = DASHBOARDS_DIR) -> list[Path]:
    """The provisioned files (docker-compose mounts them)."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for dashboard in DASHBOARDS:
        path = folder / dashboard.file_name
        path.write_text(dashboard_json(dashboard))
        written.append(path)
    return written
