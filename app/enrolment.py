"""A new station in two commands: `stations add NAME` on the server makes its Kafka
principal and a config bundle; `stations install BUNDLE` on the Pi puts the config in
place (0600) and writes a systemd unit.

The bundle is a tar.gz holding `soundscape.toml` (the broker's SASL_SSL address, the
station's user and password, its id) and `ca.pem` (the deployment's CA, so the station
trusts that broker and no other). It holds a password: it is written 0600, and should
travel like a key.
"""

from __future__ import annotations

import io
import os
import secrets
import sys
import tarfile
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import SecretStr, ValidationError

from soundscape.chunk_signing import (
    ARCHIVE_PREFIX,
    new_private_key_text,
    private_key_from_text,
    public_key_text,
)
from soundscape.errors import UserError
from soundscape.infra.certs import cert_paths, ensure_certs, write_private, write_public
from soundscape.infra.kafka import principals
from soundscape.infra.kafka.broker import KafkaBroker
from soundscape.envelope import STATION_ID_RE
from soundscape.local_services import LOCAL_SERVICE_NAME
from soundscape.settings import Settings
from soundscape.sinks.signing_keys import register_key, revoke_key

CONFIG_NAME = "soundscape.toml"
CA_NAME = "ca.pem"
UNIT_NAME = "soundscape-station.service"
_MAX_MEMBER_BYTES = 64 * 1024
#: systemd restarts a station that stopped telling it it is healthy for this long.
WATCHDOG_S = 120


@dataclass(frozen=True)
class Enrolment:
    station_id: str
    bundle: Path
    bootstrap: str
    replaced: bool


def add_station(settings: Settings, station_id: str, out: Path | None = None,
                replace: bool = False, signing: bool = True) -> Enrolment:
    """Create the station's principal and ACLs on the local broker, its signing key
    (the public half registered in the results database), and write its bundle."""
    _check_id(station_id)
    address = _local_broker_address(settings, "stations add")
    existing = station_id in principals.users_with_credentials(settings)
    if existing and not replace:
        raise UserError(f"station {station_id!r} already has credentials",
                        hint="--replace gives it a new password (the old bundle stops working), "
                             "or `soundscape stations revoke` first")
    signing_key = new_private_key_text() if signing else None
    if signing_key is not None:  # first: a database that is not ready changes nothing
        register_key(settings, station_id,
                     public_key_text(private_key_from_text(signing_key)))
    password = secrets.token_urlsafe(32)
    principals.add_station(settings, station_id, password)
    ensure_certs(settings)
    target = out or Path(f"{station_id}.station.tar.gz")
    write_private(target, _bundle_bytes(station_id, address, password,
                                        cert_paths(settings).ca_cert.read_bytes(),
                                        signing_key))
    return Enrolment(station_id, target.absolute(), address, existing)


def add_service(settings: Settings, role: str, name: str, out: Path | None = None,
                replace: bool = False) -> Enrolment:
    """A service on another machine (worker, sink, replay) as a principal of its own on
    the stations' SASL_SSL listener, with its role's ACLs only; its config bundle
    (the same format as a station's, `[service]` instead of `[station]`)."""
    _check_id(name)
    if name == LOCAL_SERVICE_NAME:
        raise UserError(f"{name!r} names this machine's own services (made by `infra up`)",
                        hint="give the remote service a name of its own, e.g. gpu-1")
    address = _local_broker_address(settings, "services add")
    user = principals.service_user(role, name)
    existing = user in principals.users_with_credentials(settings)
    if existing and not replace:
        raise UserError(f"{role} {name!r} already has credentials",
                        hint="--replace gives it a new password, or `soundscape services "
                             "revoke` first")
    password = secrets.token_urlsafe(32)
    principals.add_principal(settings, role, user, password)
    ensure_certs(settings)
    target = out or Path(f"{user}.tar.gz")
    config = _config_text(f"{role} {name}", "services add", address, user, password,
                          ["[service]", f'role = "{role}"', f'name = "{name}"'])
    write_private(target, _tar(config, cert_paths(settings).ca_cert.read_bytes()))
    return Enrolment(user, target.absolute(), address, existing)


def revoke_service(settings: Settings, role: str, name: str) -> dict[str, int]:
    return principals.revoke_principal(settings, principals.service_user(role, name))


def add_archive_key(settings: Settings, name: str, out: Path | None = None) -> Path:
    """A signing key for replays of archive `name`: registered as archive:NAME, the
    private half written 0600 (replay reads it from SOUNDSCAPE_REPLAY__SIGNING_KEY)."""
    _check_id(name)
    key = new_private_key_text()
    register_key(settings, f"{ARCHIVE_PREFIX}{name}", public_key_text(private_key_from_text(key)))
    target = out or Path(f"archive-{name}.key")
    write_private(target, key.encode())
    return target.absolute()


def as_principal(settings: Settings, user: str, password: str) -> Settings:
    """The settings of a client of the local broker's SASL_SSL listener as `user`, as its
    bundle would configure it (for benchmarks and tests on this machine)."""
    return settings.model_copy(update={"kafka": settings.kafka.model_copy(update={
        "bootstrap_servers": KafkaBroker(settings).stations_address(),
        "security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_username": user, "sasl_password": SecretStr(password),
        "ssl_ca_location": cert_paths(settings).ca_cert})})


def _local_broker_address(settings: Settings, command: str) -> str:
    """The stations' SASL_SSL listener of the running local broker, as clients dial it;
    or, for a broker this deployment configures with its own CA (docker-compose), the
    listener its settings name (stations_port with an external bootstrap)."""
    kafka = settings.kafka
    if kafka.bootstrap_servers and kafka.stations_port:
        return f"{kafka.stations_advertised_host or kafka.stations_host}:{kafka.stations_port}"
    if settings.kafka.bootstrap_servers:
        raise UserError(f"`{command}` manages the broker `infra up` runs; this deployment "
                        f"uses {settings.kafka.bootstrap_servers}",
                        hint="create the user and ACLs with your cluster's tools "
                             "(docs/explanation/security.md)")
    if kafka.stations_host in ("0.0.0.0", "::") and not kafka.stations_advertised_host:
        raise UserError(
            f"the stations' listener binds {kafka.stations_host}, which a client cannot "
            "dial: its bundle needs the name it reaches this machine by",
            hint="set SOUNDSCAPE_KAFKA__STATIONS_ADVERTISED_HOST (e.g. broker.example.org), "
                 "then `soundscape infra down && soundscape infra up`")
    broker = KafkaBroker(settings)
    address = broker.stations_address()
    if broker.pid() is None or address is None:
        raise UserError("the local broker is not running", hint="soundscape infra up")
    return address


def revoke_station(settings: Settings, station_id: str) -> dict[str, int]:
    """The broker's credential and ACLs, and the signing key (marked revoked: chunks it
    signed, still in Kafka, are refused too)."""
    removed = principals.revoke_station(settings, station_id)
    return removed | {"signing_key": int(revoke_key(settings, station_id))}


def _bundle_bytes(station_id: str, bootstrap: str, password: str, ca_pem: bytes,
                  signing_key: str | None) -> bytes:
    config = _config_text(f"station {station_id}", "stations add", bootstrap, station_id,
                          password, ["[station]", f'station_id = "{station_id}"',
                                     *([f'signing_key = "{signing_key}"'] if signing_key else [])])
    return _tar(config, ca_pem)


def _config_text(who: str, command: str, bootstrap: str, user: str, password: str,
                 section: list[str]) -> bytes:
    return "\n".join([
        f"# Soundscape {who}: made by `soundscape {command}` "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. Holds a password: keep it 0600.",
        "[kafka]",
        f'bootstrap_servers = "{bootstrap}"',
        'security_protocol = "SASL_SSL"',
        'sasl_mechanism = "SCRAM-SHA-512"',
        f'sasl_username = "{user}"',
        f'sasl_password = "{password}"',
        f'ssl_ca_location = "{CA_NAME}"',
        "",
        *section,
        "",
    ]).encode()


def _tar(config: bytes, ca_pem: bytes) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data, mode in ((CONFIG_NAME, config, 0o600), (CA_NAME, ca_pem, 0o644)):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), mode, int(time.time())
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def read_bundle(bundle: Path) -> tuple[dict[str, Any], bytes]:
    """The bundle's config (checked against Settings) and CA; anything else is refused."""
    members: dict[str, bytes] = {}
    try:
        with tarfile.open(bundle, mode="r:gz") as tar:
            for member in tar:
                if member.name not in (CONFIG_NAME, CA_NAME) or not member.isfile():
                    raise UserError(f"{bundle}: unexpected entry {member.name!r}",
                                    hint="use a bundle made by `soundscape stations add`")
                if member.size > _MAX_MEMBER_BYTES:
                    raise UserError(f"{bundle}: {member.name} is implausibly large")
                handle = tar.extractfile(member)
                members[member.name] = handle.read() if handle else b""
    except (OSError, tarfile.TarError, EOFError) as exc:
        raise UserError(f"{bundle} is not a station bundle: {exc}",
                        hint="use the file `soundscape stations add` wrote") from None
    if set(members) != {CONFIG_NAME, CA_NAME}:
        raise UserError(f"{bundle} lacks {sorted({CONFIG_NAME, CA_NAME} - set(members))}")
    try:
        config = tomllib.loads(members[CONFIG_NAME].decode())
        Settings.model_validate(config)
    except (UnicodeDecodeError, tomllib.TOMLDecodeError, ValidationError) as exc:
        raise UserError(f"{bundle}: {CONFIG_NAME} is invalid: {exc}") from None
    kafka, station = config.get("kafka"), config.get("station")
    expected = {"bootstrap_servers", "security_protocol", "sasl_mechanism", "sasl_username",
                "sasl_password", "ssl_ca_location"}
    if (set(config) != {"kafka", "station"} or not isinstance(kafka, dict)
            or set(kafka) != expected or not isinstance(station, dict)
            or not {"station_id"} <= set(station) <= {"station_id", "signing_key"}
            or kafka["security_protocol"] != "SASL_SSL"
            or station["station_id"] != kafka["sasl_username"]):
        raise UserError(f"{bundle}: {CONFIG_NAME} is not a station's config",
                        hint="use the file `soundscape stations add` wrote, unchanged")
    if b"BEGIN CERTIFICATE" not in members[CA_NAME]:
        raise UserError(f"{bundle}: {CA_NAME} holds no certificate")
    return config, members[CA_NAME]


def default_config_dir() -> Path:
    return Path("/etc/soundscape") if os.geteuid() == 0 else Path.home() / ".config/soundscape"


def install_bundle(bundle: Path, config_dir: Path, systemd_dir: Path | None,
                   state_dir: Path | None = None) -> dict[str, Any]:
    """Put the station's config in `config_dir` (0600, the CA beside it) and, with
    `systemd_dir`, a unit that runs the station with it; returns what was written."""
    config, ca_pem = read_bundle(bundle)
    config_dir.mkdir(parents=True, exist_ok=True)
    config_dir.chmod(0o700)
    ca_path = config_dir / CA_NAME
    write_public(ca_path, ca_pem)
    config["kafka"]["ssl_ca_location"] = str(ca_path)
    if state_dir is not None:
        config["state_dir"] = str(state_dir)
    config_path = config_dir / CONFIG_NAME
    write_private(config_path, _toml(config).encode())
    written = {"config": str(config_path), "ca": str(ca_path),
               "station_id": config["station"]["station_id"], "unit": None}
    if systemd_dir is not None:
        systemd_dir.mkdir(parents=True, exist_ok=True)
        unit = systemd_dir / UNIT_NAME
        write_public(unit, systemd_unit(config_path, written["station_id"]).encode())
        written["unit"] = str(unit)
    return written


def systemd_unit(config_path: Path, station_id: str) -> str:
    return f"""[Unit]
Description=Soundscape field station {station_id}
Documentation=https://github.com/soundscape (docs/how-to/run-a-station.md)
Wants=network-online.target
After=network-online.target sound.target

[Service]
Type=notify
NotifyAccess=main
Environment=SOUNDSCAPE_CONFIG={config_path}
Environment=SOUNDSCAPE_LOG_FORMAT=json
ExecStart={sys.executable} -m soundscape station
# The station tells systemd it is alive while healthy; silent this long, it is restarted.
WatchdogSec={WATCHDOG_S}
Restart=always
RestartSec=5
# The spool survives restarts; the first SIGTERM lets the station send what it holds.
TimeoutStopSec=60
KillSignal=SIGTERM

[Install]
WantedBy=multi-user.target
"""


def _toml(config: dict[str, Any]) -> str:
    lines: list[str] = []
    top = {k: v for k, v in config.items() if not isinstance(v, dict)}
    for key, value in top.items():
        lines.append(f"{key} = {_toml_value(value)}")
    for section, values in config.items():
        if isinstance(values, dict):
            lines += ["", f"[{section}]"]
            lines += [f"{key} = {_toml_value(value)}" for key, value in values.items()]
    return "\n".join(lines) + "\n"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


def _check_id(station_id: str) -> None:
    if not STATION_ID_RE.fullmatch(station_id):
        raise UserError(f"{station_id!r} is not a station id",
                        hint=f"lower-case letters, digits and dashes: {STATION_ID_RE.pattern}")
