"""`soundscape report` over the demo run: a PNG per plotted panel, an HTML page with the
tables and stats, the dashboards' numbers (the road station 20 dB louder)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from statistics import median

from click.testing import CliRunner
from grafana_testkit import END, DemoDatabase

from soundscape.app.cli import cli
from soundscape.infra.grafana import dashboard_model as model
from soundscape.infra.grafana import report

PNG = b"\x89PNG\r\n\x1a\n"


def test_report_command_writes_plots_and_a_page(demo_db: DemoDatabase, tmp_path: Path) -> None:
    pg = demo_db.settings.postgres
    env = {"SOUNDSCAPE_POSTGRES__URL": pg.url.get_secret_value(),  # type: ignore[union-attr]
           "SOUNDSCAPE_POSTGRES__READER_URL": pg.reader_url.get_secret_value()}  # type: ignore[union-attr]
    out = tmp_path / "report"
    result = CliRunner().invoke(cli, ["report", "--since", (END - timedelta(hours=24)).isoformat(),
                                      "--until", END.isoformat(), "--out", str(out)], env=env)
    assert result.exit_code == 0, result.output
    plotted = [p for d in model.DASHBOARDS for p in d.panels
               if p.report and p.kind in ("timeseries", "bargauge", "barchart", "geomap")]
    images = sorted(out.glob("*.png"))
    assert len(images) == len(plotted)
    for image in images:
        data = image.read_bytes()
        assert data.startswith(PNG) and len(data) > 10_000, image.name
    page = (out / "index.html").read_text()
    for image in images:
        assert f'src="{image.name}"' in page
    for title in ("Stations: last seen", "Gaps in coverage", "Drift alerts", "Chunks scored",
                  "Latency per stage (live)"):
        assert title in page
    assert "marsh-02" in page and "noise_floor" in page  # an alert in the alerts table


def test_report_numbers_are_the_dashboards(demo_db: DemoDatabase, tmp_path: Path) -> None:
    made = report.make(demo_db.settings, END - timedelta(hours=12), END, tmp_path,
                       stations=["marsh-01", "marsh-02"])
    assert made.stations == ["marsh-01", "marsh-02"]
    noise = next(r for r in made.results if r.panel.title == "Noise floor (median)")
    by_station = {s: median(v for t, m, v in noise.rows if m == s) for s in made.stations}
    assert by_station["marsh-02"] - by_station["marsh-01"] > 15  # the road
    stats = dict(made.stats)
    assert stats["Stations reporting"] == 2
    assert stats["Chunks scored"] == 2 * 12 * 360
