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
    """Create STATION_ID's Kafka user (SCRAM-SHA-512) with the right to write audio,
    heartbeats and its edge results only, and its chunk-signing key (the public half
    registered in the results database), and write its config bundle (0600) to copy to
    the Pi."""
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
    """Remove STATION_ID's Kafka user and rights (its next publish is refused) and revoke
    its signing key (workers refuse its chunks, even those already in Kafka). Its data
    already stored stays."""
    from soundscape.app.enrolment import revoke_station

    removed = revoke_station(current_settings(), station_id)
    if as_json:
        echo_json({"station_id": station_id} | removed)
        return
    if not any(removed.values()):
        click.echo(f"station {station_id} had no credentials or ACLs")
        return
    click.echo(f"station {station_id}: credential removed: {bool(removed['credentials'])}, "
               f"ACLs removed: {removed['acls']}, "
               f"signing key revoked: {bool(removed['signing_key'])}")


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


@click.group("keys")
def keys() -> None:
    """Chunk-signing keys: the public keys workers check signatures against (stations get
    theirs from `stations add`; archives replayed by `soundscape replay` from here)."""


@keys.command("archive")
@click.argument("name")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the private key [archive-NAME.key], 0600.")
def keys_archive(name: str, out: Path | None) -> None:
    """Make the signing key replays of archive NAME sign with, register its public half
    as `archive:NAME`, and write the private half (0600) for SOUNDSCAPE_REPLAY__SIGNING_KEY."""
    from soundscape.app.enrolment import add_archive_key

    path = add_archive_key(current_settings(), name, out)
    click.echo(f"archive:{name} registered; private key in {path} (0600)")
    click.echo(f"replay with: SOUNDSCAPE_REPLAY__SIGNING_KEY=$(cat {path}) "
               f"SOUNDSCAPE_REPLAY__ARCHIVE_NAME={name} soundscape replay ...")


@keys.command("revoke")
@click.argument("signer")
def keys_revoke(signer: str) -> None:
    """Revoke SIGNER's key (a station id, or archive:NAME): workers refuse what it signs."""
    from soundscape.sinks.signing_keys import revoke_key

    done = revoke_key(current_settings(), signer)
    click.echo(f"{signer}: {'revoked' if done else 'no key in force'}")


@keys.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable.")
def keys_list(as_json: bool) -> None:
    """Every registered signer, its public key, and whether it is revoked."""
    from soundscape.sinks.signing_keys import list_keys

    rows = list_keys(current_settings())
    if as_json:
        echo_json(rows)
        return
    for row in rows:
        state = f"revoked {row['revoked_at']:%Y-%m-%d}" if row["revoked_at"] else "in force"
        click.echo(f"{row['signer']:32} {row['public_key']}  {state}")


#: `services add` roles and the command each runs with its bundle.
_COMMANDS = {"worker": "worker", "sink": "sink", "replay": "replay FILES...",
             "drift": "drift run", "clips": "clips run", "notify": "notify run"}
_ROLES = list(_COMMANDS)


@click.group("services")
def services() -> None:
    """Principals for services that reach this broker from other machines (a GPU worker
    box, a sink beside a remote database): each its own Kafka user on the SASL_SSL
    listener, with what its role reads and writes and nothing more."""


@services.command("add")
@click.argument("role", type=click.Choice(_ROLES))
@click.argument("name")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the bundle [ROLE.NAME.tar.gz].")
@click.option("--replace", is_flag=True, help="It exists: give it a new password.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable.")
def services_add(role: str, name: str, out: Path | None, replace: bool, as_json: bool) -> None:
    """Create the Kafka user ROLE.NAME with its role's rights: a worker reads audio and
    writes detections and audio dead letters (only workers can write detections); a sink
    reads results and writes result dead letters; a replay writes audio; drift reads
    detections, writes drift reports and its own state topics. Writes its config
    bundle (soundscape.toml and ca.pem, 0600): unpack it on the service's machine and
    point SOUNDSCAPE_CONFIG at its soundscape.toml (add the database URL for a worker or
    sink)."""
    from soundscape.app.enrolment import add_service

    done = add_service(current_settings(), role, name, out, replace)
    if as_json:
        echo_json({"user": done.station_id, "bundle": str(done.bundle),
                   "bootstrap": done.bootstrap, "replaced": done.replaced})
        return
    click.echo(f"{role} {name}: Kafka user {done.station_id}, broker {done.bootstrap} (SASL_SSL)")
    click.echo(f"bundle:  {done.bundle}  (holds its password: copy it like a key)")
    click.echo(f"there:   tar xzf {done.bundle.name} -C DIR && "
               f"SOUNDSCAPE_CONFIG=DIR/soundscape.toml soundscape {_COMMANDS[role]}")


@services.command("revoke")
@click.argument("role", type=click.Choice(_ROLES))
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable.")
def services_revoke(role: str, name: str, as_json: bool) -> None:
    """Remove ROLE.NAME's Kafka user and rights: its next request is refused."""
    from soundscape.app.enrolment import revoke_service

    removed = revoke_service(current_settings(), role, name)
    if as_json:
        echo_json({"role": role, "name": name} | removed)
        return
    click.echo(f"{role} {name}: credential removed: {bool(removed['credentials'])}, "
               f"ACLs removed: {removed['acls']}")
