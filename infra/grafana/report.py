"""`soundscape report`: the dashboards' main panels as PNG plots and one HTML page.

For people without a Grafana at hand: the panels marked `report=True` in
dashboard_model.py run with Grafana's macros expanded for the chosen range (macros.py),
as the read-only role, and are drawn with matplotlib; tables and the stat panels go into
the page. The numbers are therefore the dashboards' numbers.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from soundscape.database import database_url
from soundscape.errors import UserError
from soundscape.infra.grafana.dashboard_model import DASHBOARDS, Dashboard, Panel, Variable
from soundscape.infra.grafana.macros import QueryContext, auto_interval, expand, parse_interval

#: Data points a report plot aims at across its range (Grafana's maxDataPoints).
MAX_POINTS = 300
UNITS = {"ms": "ms", "dB": "dB", "bytes": "bytes", "celsius": "°C", "reqps": "per second",
         "percentunit": "share", "short": ""}
TABLE_ROWS = 50
MAX_SERIES = 12


@dataclass
class PanelResult:
    dashboard: Dashboard
    panel: Panel
    columns: list[str]
    rows: list[tuple[Any, ...]]
    image: str | None = None  # file name of the PNG, if drawn


@dataclass
class Report:
    since: datetime
    until: datetime
    stations: list[str]
    results: list[PanelResult] = field(default_factory=list)
    stats: list[tuple[str, Any]] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)


def connect_reader(url: str) -> psycopg.Connection[Any]:
    return psycopg.connect(url, autocommit=True, connect_timeout=10,
                           options="-c timezone=UTC -c default_transaction_read_only=on",
                           application_name="soundscape-report")


def variable_values(conn: psycopg.Connection[Any], var: Variable,
                    ctx: QueryContext) -> list[str]:
    """What "All" means for a variable in this range."""
    if not var.sql:
        return list(var.values)
    return [str(row[0]) for row in conn.execute(expand(var.sql, ctx))]  # type: ignore[arg-type]


def context_for(conn: psycopg.Connection[Any], dashboards: Iterable[Dashboard],
                since: datetime, until: datetime,
                stations: Sequence[str] | None = None) -> QueryContext:
    """Every variable of the dashboards at "All" (stations: the given ones)."""
    ctx = QueryContext(since, until)
    values: dict[str, list[str]] = {}
    for dashboard in dashboards:
        for var in dashboard.variables:
            if var.name not in values:
                values[var.name] = variable_values(conn, var, ctx)
    if stations:
        values["station"] = list(stations)
    return QueryContext(since, until, variables=values)


def panel_context(ctx: QueryContext, panel: Panel, max_points: int = MAX_POINTS) -> QueryContext:
    minimum = parse_interval(panel.min_interval) if panel.min_interval else None
    interval = auto_interval(ctx.start, ctx.end, max_points, minimum)
    return QueryContext(ctx.start, ctx.end, interval, ctx.variables)


def run_panel(conn: psycopg.Connection[Any], panel: Panel,
              ctx: QueryContext) -> tuple[list[str], list[tuple[Any, ...]]]:
    with conn.cursor() as cur:
        cur.execute(expand(panel.sql, panel_context(ctx, panel)))  # type: ignore[arg-type]
        columns = [c.name for c in cur.description or ()]
        return columns, cur.fetchall()


# ---- drawing -------------------------------------------------------------------------------
def _time(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value
    return datetime.fromtimestamp(float(value), UTC)


def series(columns: list[str], rows: list[tuple[Any, ...]]) -> dict[str, tuple[list[datetime],
                                                                                list[float]]]:
    """Grafana's time_series format: long (time, metric, value) or wide (time, a, b, ...)."""
    out: dict[str, tuple[list[datetime], list[float]]] = {}
    if len(columns) == 3 and columns[1] == "metric":
        for when, metric, value in rows:
            xs, ys = out.setdefault(str(metric), ([], []))
            xs.append(_time(when))
            ys.append(float(value) if value is not None else float("nan"))
        return out
    for index, name in enumerate(columns[1:], start=1):
        out[name] = ([_time(r[0]) for r in rows],
                     [float(r[index]) if r[index] is not None else float("nan") for r in rows])
    return out


def break_gaps(xs: list[datetime], ys: list[float]) -> tuple[list[datetime], list[float]]:
    """Insert a NaN where consecutive points lie over 1.5 typical steps apart, so a
    station's outage shows as a break in its line instead of a slope across it."""
    if len(xs) < 3:
        return xs, ys
    steps = sorted((b - a).total_seconds() for a, b in zip(xs, xs[1:]))
    typical = steps[len(steps) // 2]
    if typical <= 0:
        return xs, ys
    out_x, out_y = [xs[0]], [ys[0]]
    for (a, b), y in zip(zip(xs, xs[1:]), ys[1:]):
        if (b - a).total_seconds() > 1.5 * typical:
            out_x.append(a + (b - a) / 2)
            out_y.append(float("nan"))
        out_x.append(b)
        out_y.append(y)
    return out_x, out_y


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def draw(result: PanelResult, folder: Path,
         span: tuple[datetime, datetime] | None = None) -> Path | None:
    """A PNG of a timeseries, bar or map panel; None for tables. A time series spans the
    report's range (`span`) at least, and series of one or two points get markers (a
    short range: one bucket per series, which a line alone does not show)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    panel, columns, rows = result.panel, result.columns, result.rows
    if panel.kind not in ("timeseries", "bargauge", "barchart", "geomap"):
        return None
    fig, ax = plt.subplots(figsize=(10, 4.2 if panel.kind != "geomap" else 6), dpi=100)
    unit = UNITS.get(panel.unit, panel.unit)
    if not rows:
        ax.text(0.5, 0.5, "no data in this range", ha="center", va="center",
                transform=ax.transAxes, color="grey")
    elif panel.kind == "timeseries":
        lines = series(columns, rows)
        if len(lines) > MAX_SERIES:  # keep the series that reach highest
            kept = sorted(lines, key=lambda n: -max((y for y in lines[n][1] if y == y),
                                                    default=float("-inf")))[:MAX_SERIES]
            ax.text(0.99, 0.98, f"{len(lines) - MAX_SERIES} lower series not shown",
                    ha="right", va="top", transform=ax.transAxes, fontsize=7, color="grey")
            lines = {name: lines[name] for name in kept}
        if "threshold" in panel.options:
            ax.axhline(panel.options["threshold"], color="red", linestyle="--", linewidth=1)
        for name, (xs, ys) in sorted(lines.items()):
            xs, ys = break_gaps(xs, ys)
            ax.plot(xs, ys, label=name, linewidth=1.2, marker="o" if len(xs) <= 2 else None,
                    drawstyle="steps-post" if panel.options.get("drawStyle") == "bars"
                    else "default")
        if span is not None:
            times = [x for xs, _ in lines.values() for x in xs]
            ax.set_xlim(min([span[0], *times]), max([span[1], *times]))
        ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(ax.xaxis.get_major_locator()))
        ax.set_ylabel(unit)
        if len(lines) <= 16:
            ax.legend(fontsize=7, ncol=min(4, len(lines)), loc="upper left", framealpha=0.7)
        ax.grid(alpha=0.3)
    elif panel.kind in ("bargauge", "barchart"):
        labels, values = [str(r[0]) for r in rows], [float(r[1] or 0) for r in rows]
        if panel.kind == "bargauge":
            ax.barh(labels[::-1], values[::-1], color="#3274d9")
            ax.set_xlabel(columns[1])
        else:
            ax.bar(labels, values, color="#3274d9")
            ax.set_ylabel(columns[1])
            ax.set_xlabel(columns[0])
        ax.grid(alpha=0.3, axis="x" if panel.kind == "bargauge" else "y")
    else:  # geomap: stations by coordinates, coloured by the value column
        index = {name: i for i, name in enumerate(columns)}
        lon = [float(r[index["longitude"]]) for r in rows]
        lat = [float(r[index["latitude"]]) for r in rows]
        value = [float(r[-1] or 0) for r in rows]
        dots = ax.scatter(lon, lat, c=value, cmap="viridis", s=120, edgecolors="black")
        for r, x, y in zip(rows, lon, lat, strict=True):
            ax.annotate(f"{r[index['station_id']]}\n{r[index['name']]}", (x, y),
                        textcoords="offset points", xytext=(8, 4), fontsize=8)
        fig.colorbar(dots, ax=ax, label=columns[-1])
        ax.set_xlabel("longitude")
        ax.set_ylabel("latitude")
        ax.set_aspect(1 / max(0.2, math.cos(math.radians(sum(lat) / len(lat)))))
        ax.margins(0.25)
        ax.grid(alpha=0.3)
    ax.set_title(f"{panel.title}  ({result.dashboard.title.split(': ')[-1]})", fontsize=11)
    fig.tight_layout()
    path = folder / f"{_slug(result.dashboard.uid)}--{_slug(panel.title)}.png"
    fig.savefig(path)
    plt.close(fig)
    return path


# ---- the page ------------------------------------------------------------------------------
def _cell(value: Any) -> str:
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, float):
        return f"{value:.4g}"
    return html.escape("" if value is None else str(value))


def _table(result: PanelResult) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in result.columns)
    body = "".join("<tr>" + "".join(f"<td>{_cell(v)}</td>" for v in row) + "</tr>"
                   for row in result.rows[:TABLE_ROWS])
    more = (f"<p class=note>{len(result.rows) - TABLE_ROWS} more rows not shown</p>"
            if len(result.rows) > TABLE_ROWS else "")
    empty = "<p class=note>no rows in this range</p>" if not result.rows else ""
    return f"<table><tr>{head}</tr>{body}</table>{more}{empty}"


def page(report: Report) -> str:
    parts = [
        "<!doctype html><html><head><meta charset=utf-8><title>Soundscape report</title>",
        "<style>body{font-family:sans-serif;margin:2em;max-width:1100px}"
        "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;"
        "padding:3px 6px;text-align:left}.stats span{display:inline-block;margin:0 2em 1em 0}"
        ".stats b{font-size:22px;display:block}.note{color:#777;font-size:12px}"
        "img{max-width:100%}</style></head><body>",
        "<h1>Soundscape report</h1>",
        f"<p>{report.since:%Y-%m-%d %H:%M} to {report.until:%Y-%m-%d %H:%M} UTC; "
        f"stations: {html.escape(', '.join(report.stations) or 'none')}; "
        f"made {datetime.now(UTC):%Y-%m-%d %H:%M} UTC.</p>",
        "<div class=stats>" + "".join(
            f"<span><b>{_cell(value)}</b>{html.escape(title)}</span>"
            for title, value in report.stats) + "</div>",
    ]
    current = None
    for result in report.results:
        if result.dashboard is not current:
            current = result.dashboard
            parts.append(f"<h2>{html.escape(current.title)}</h2>"
                         f"<p class=note>{html.escape(current.description)}</p>")
        parts.append(f"<h3>{html.escape(result.panel.title)}</h3>")
        if result.panel.description:
            parts.append(f"<p class=note>{html.escape(result.panel.description)}</p>")
        if result.image:
            parts.append(f'<img src="{html.escape(result.image)}" '
                         f'alt="{html.escape(result.panel.title)}">')
        else:
            parts.append(_table(result))
    parts.append("</body></html>")
    return "\n".join(parts)


def make(settings: Any, since: datetime, until: datetime, out: Path,
         stations: Sequence[str] | None = None,
         progress: Callable[[Iterable[Any]], Iterable[Any]] = iter) -> Report:
    """Run the report panels for [since, until) and write PNGs and index.html to `out`."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot write to {out}: {exc.strerror}",
                        hint="give --out a folder you may write") from None
    with connect_reader(database_url(settings, "reader")) as conn:
        ctx = context_for(conn, DASHBOARDS, since, until, stations)
        report = Report(since, until, list(ctx.variables.get("station", [])))
        panels = [(d, p) for d in DASHBOARDS for p in d.panels
                  if p.sql and (p.report or p.kind == "stat")]
        for dashboard, panel in progress(panels):
            columns, rows = run_panel(conn, panel, ctx)
            if panel.kind == "stat":
                report.stats.append((panel.title, rows[0][0] if rows else None))
                continue
            result = PanelResult(dashboard, panel, columns, rows)
            image = draw(result, out, (since, until))
            if image is not None:
                result.image = image.name
                report.files.append(image)
            report.results.append(result)
    index = out / "index.html"
    index.write_text(page(report))
    report.files.append(index)
    return report
