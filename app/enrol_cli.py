"""`soundscape stations add | revoke | install`: enrolling stations on the broker."""

from __future__ import annotations

from pathlib import Path

import click

from soundscape.cli_context import current_settings, echo_json


@click.command("add")
@click.argument("station_id")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the bundle [STATION_ID.station.tar.gz].")
@click.option("--replace", is_flag=True,
              help="The station exists: give it a new password (its old bundle stops working).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable.")
def stations_add(station_id: str, out: Path | None, replace: bool, as_json: bool) -> None:
    """Create STATION_ID's Kafka user (SCRAM-SHA-512) with the right to write audio and
    heartbeats only, and write its config bundle (0600) to copy to the Pi."""
    from soundscape.app.enrolment import add_station

    done = add_station(current_settings(), station_id, out, replace)
    if as_json:
        echo_json({"station_id": done.station_id, "bundle": str(done.bundle),
                   "bootstrap": done.bootstrap, "replaced": done.replaced})
        return
    click.echo(f"station {done.station_id}: {'new password' if done.replaced else 'enrolled'}; "
               f"broker {done.bootstrap} (SASL_SSL)")
    click.echo(f"bundle:  {done.bundle}  (holds its password: copy it like a key)")
    click.echo(f"on the Pi: soundscape stations install {done.bundle.name}")


@click.command("revoke")
@click.argument("station_id")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable.")
def stations_revoke(station_id: str, as_json: bool) -> None:
    """Remove STATION_ID's Kafka user and rights: its next publish is refused. Its data
    already stored stays."""
    from soundscape.infra.kafka.principals import revoke_station

    removed = revoke_station(current_settings(), station_id)
    if as_json:
        echo_json({"station_id": station_id} | removed)
        return
    if not any(removed.values()):
        click.echo(f"station {station_id} had no credentials or ACLs")
        return
    click.echo(f"station {station_id}: credential removed: {bool(removed['credentials'])}, "
               f"ACLs removed: {removed['acls']}")


@click.command("install")
@click.argument("bundle", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--config-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Where the config goes [/etc/soundscape as root, else "
                   "~/.config/soundscape].")
@click.option("--systemd-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Where the unit goes [/etc/systemd/system as root].")
@click.option("--no-systemd", is_flag=True, help="Write no unit (run `soundscape station` "
                                                 "yourself with SOUNDSCAPE_CONFIG).")
@click.option("--state-dir", type=click.Path(file_okay=False, path_type=Path),
              help="The station's spool and state folder [the default state folder].")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable.")
def stations_install(bundle: Path, config_dir: Path | None, systemd_dir: Path | None,
                     no_systemd: bool, state_dir: Path | None, as_json: bool) -> None:
    """On the Pi: put BUNDLE's config in place (0600) and write a systemd unit that runs
    the station with it (restart always, watchdog). Then: systemctl daemon-reload &&
    systemctl enable --now soundscape-station."""
    import os

    from soundscape.app.enrolment import default_config_dir, install_bundle

    if no_systemd:
        systemd_dir = None
    elif systemd_dir is None:
        if os.geteuid() != 0:
            raise click.UsageError("writing the systemd unit needs root: run with sudo, or "
                                   "pass --systemd-dir DIR or --no-systemd")
        systemd_dir = Path("/etc/systemd/system")
    written = install_bundle(bundle, config_dir or default_config_dir(), systemd_dir,
                             state_dir)
    if as_json:
        echo_json(written)
        return
    click.echo(f"station {written['station_id']}: config {written['config']} (0600), "
               f"CA {written['ca']}")
    if written["unit"]:
        click.echo(f"unit {written['unit']}: systemctl daemon-reload && "
                   "systemctl enable --now soundscape-station")
    else:
        click.echo(f"run: SOUNDSCAPE_CONFIG={written['config']} soundscape station")
