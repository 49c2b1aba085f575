"""A private PostgreSQL cluster made with Debian's server binaries under the state folder.

    postgres/data/              the cluster (initdb), owned by the user that runs it
    postgres/run/               its Unix socket (0700: only the server's user and root)
    postgres/tls/               the server's certificate and key, copied from certs/
    postgres/logs/postgres.log
    postgres/state.json         port chosen on first start
    postgres/credentials.json   generated role passwords, the superuser's too (mode 0600)

PostgreSQL refuses to run as root; when Soundscape runs as root the server runs as the
`postgres` system user (settings.postgres.os_user), which the Debian package creates.

Every role logs in with a SCRAM password, on the socket too: no `trust` and no `peer`
line, so a local OS user who can reach the socket still needs a password. TCP from
loopback may use TLS; from anywhere else it must (`hostssl` only). pg_hba.conf is ours
and rewritten at every start.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from soundscape.errors import ServiceError
from soundscape.infra import process
from soundscape.infra.certs import cert_paths, ensure_certs
from soundscape.infra.postgres.roles import ROLES, bootstrap_database, grant_roles
from soundscape.local_services import (
    Role,
    local_postgres_url,
    postgres_credentials_file,
    postgres_state_file,
)
from soundscape.logs import get_logger
from soundscape.settings import Settings

log = get_logger(__name__)

_INSTALL_HINT = "install the server: `bash infra/setup.sh` (Debian package postgresql-15)"
_HBA_HEADER = "# Written by `soundscape infra up`; edits are overwritten (docs/security.md)."
_LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class ClusterStatus:
    running: bool
    pid: int | None
    port: int | None
    data_dir: str
    log_file: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "running": self.running,
            "pid": self.pid,
            "port": self.port,
            "data_dir": self.data_dir,
            "log": self.log_file,
        }


class PostgresCluster:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.home = settings.state_dir / "postgres"
        self.data_dir = self.home / "data"
        self.run_dir = self.home / "run"
        self.tls_dir = self.home / "tls"
        self.log_file = self.home / "logs" / "postgres.log"
        self.state_file = postgres_state_file(settings)
        self.credentials_file = postgres_credentials_file(settings)

    # ---- facts -------------------------------------------------------------------------
    def port(self) -> int | None:
        state = process.read_json(self.state_file) or {}
        return state.get("port")

    def bin_dir(self) -> Path:
        configured = self.settings.postgres.bin_dir
        if configured:
            if not (configured / "initdb").exists():
                raise ServiceError(f"no initdb in {configured}", hint=_INSTALL_HINT)
            return configured
        found = sorted(
            glob.glob("/usr/lib/postgresql/*/bin/initdb"),
            key=lambda p: int(Path(p).parent.parent.name),
        )
        if found:
            return Path(found[-1]).parent
        on_path = shutil.which("initdb")
        if on_path:
            return Path(on_path).parent
        raise ServiceError("PostgreSQL server binaries (initdb, pg_ctl) not found", _INSTALL_HINT)

    def _run_as(self) -> list[str]:
        """Command prefix that drops root to the server's OS user; empty if not root."""
        if os.geteuid() != 0:
            return []
        user = self.settings.postgres.os_user
        try:
            pwd.getpwnam(user)
        except KeyError:
            raise ServiceError(
                f"running as root, but there is no `{user}` user to run PostgreSQL as",
                hint=_INSTALL_HINT + ", or set SOUNDSCAPE_POSTGRES__OS_USER",
            ) from None
        return [process.require_tool("runuser", "install util-linux"), "-u", user, "--"]

    def _pg(self, tool: str, *args: str, check: bool = True, timeout: float = 120):  # type: ignore[no-untyped-def]
        command = [*self._run_as(), str(self.bin_dir() / tool), *args]
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise ServiceError(
                f"`{tool} {' '.join(args[:3])} ...` failed:\n{(result.stderr or result.stdout)[-2000:]}",
                hint=f"see {self.log_file}; `soundscape infra reset --postgres` starts anew",
            )
        return result

    def pid(self) -> int | None:
        try:
            pid = int((self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None
        return pid if process.pid_alive(pid) else None

    def status(self) -> ClusterStatus:
        pid = self.pid()
        return ClusterStatus(pid is not None, pid, self.port(), str(self.data_dir), str(self.log_file))

    # ---- lifecycle ---------------------------------------------------------------------
    def start(self) -> ClusterStatus:
        if self.pid() is not None:
            self._secure_legacy()
            self.bootstrap()
            return self.status()
        self._prepare_dirs()
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb()
        state = process.read_json(self.state_file) or {}
        pg = self.settings.postgres
        port = process.choose_port(pg.port, state.get("port"), pg.host, "PostgreSQL")
        process.write_json(self.state_file, state | {"port": port})
        self._write_tls()
        self._write_conf(port)
        if self._hba_is_ours():
            self._write_hba()
        result = self._pg(
            "pg_ctl",
            "-D",
            str(self.data_dir),
            "-l",
            str(self.log_file),
            "-w",
            "-t",
            str(int(pg.start_timeout_s)),
            "start",
            check=False,
            timeout=pg.start_timeout_s + 30,
        )
        if result.returncode != 0:
            raise ServiceError(
                f"PostgreSQL did not start on port {port}; last log lines:\n"
                + process.tail(self.log_file),
                hint="`soundscape infra reset --postgres` clears a broken cluster",
            )
        self._secure_legacy()
        self.bootstrap()
        return self.status()

    def stop(self) -> bool:
        if self.pid() is None:
            return False
        self._pg("pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "-t", "60", "stop")
        return True

    def _prepare_dirs(self) -> None:
        for path in (self.home, self.data_dir, self.run_dir, self.tls_dir, self.log_file.parent):
            path.mkdir(parents=True, exist_ok=True)
        for private in (self.data_dir, self.run_dir, self.tls_dir):
            private.chmod(0o700)
        prefix = self._run_as()
        if prefix:
            user = pwd.getpwnam(self.settings.postgres.os_user)
            for path in (self.data_dir, self.run_dir, self.tls_dir, self.log_file.parent):
                os.chown(path, user.pw_uid, user.pw_gid)
            probe = subprocess.run([*prefix, "test", "-w", str(self.data_dir)], check=False)
            if probe.returncode != 0:
                raise ServiceError(
                    f"PostgreSQL runs as `{user.pw_name}` (it refuses root), and that user "
                    f"cannot reach {self.data_dir}",
                    hint="use a state folder every user can traverse (the default for root is "
                    "/var/lib/soundscape; set SOUNDSCAPE_STATE_DIR), or `chmod o+x` its parents",
                )

    def _initdb(self) -> None:
        if any(self.data_dir.iterdir()):
            raise ServiceError(
                f"{self.data_dir} holds files but no PG_VERSION: the state folder is corrupt",
                hint="`soundscape infra reset --postgres` wipes the cluster and starts anew",
            )
        started = time.monotonic()
        pwfile = self.tls_dir / "initdb-password"
        self._write_owned(pwfile, self.credentials()["superuser_password"].encode())
        try:
            self._pg("initdb", "-D", str(self.data_dir), "-U", "postgres", "-E", "UTF8",
                     "--no-locale", f"--pwfile={pwfile}", "--auth-local=scram-sha-256",
                     "--auth-host=scram-sha-256")
        finally:
            pwfile.unlink(missing_ok=True)
        with open(self.data_dir / "postgresql.conf", "a") as conf:
            conf.write("\ninclude_if_exists = 'soundscape.conf'\n")
        self._write_hba()
        log.info("postgres cluster created", seconds=round(time.monotonic() - started, 2))

    def _write_conf(self, port: int) -> None:
        pg = self.settings.postgres
        lines = [
            "# Written by `soundscape infra up` from the settings; edits are overwritten.",
            f"listen_addresses = '{pg.host}'",
            f"port = {port}",
            f"unix_socket_directories = '{self.run_dir}'",
            "password_encryption = 'scram-sha-256'",
            "max_connections = 100",
            "shared_buffers = '256MB'",
            "log_timezone = 'UTC'",
            "timezone = 'UTC'",
            "log_min_duration_statement = 2000",
            "ssl = on",
            f"ssl_cert_file = '{self.tls_dir / 'server.pem'}'",
            f"ssl_key_file = '{self.tls_dir / 'server.key'}'",
            "ssl_min_protocol_version = 'TLSv1.2'",
            "log_connections = on",
        ]
        self._write_owned(self.data_dir / "soundscape.conf", ("\n".join(lines) + "\n").encode())

    def _write_tls(self) -> None:
        """The server certificate (made or renewed if due) where the server's user owns it:
        PostgreSQL refuses a key that others can read."""
        ensure_certs(self.settings)
        paths = cert_paths(self.settings)
        self._write_owned(self.tls_dir / "server.pem", paths.server_cert.read_bytes())
        self._write_owned(self.tls_dir / "server.key", paths.server_key.read_bytes())

    def _hba_rules(self) -> list[str]:
        rules = [_HBA_HEADER,
                 "# TYPE   DATABASE USER ADDRESS      METHOD",
                 "local    all      all               scram-sha-256"]
        for address in ("127.0.0.1/32", "::1/128"):
            rules += [f"hostssl  all      all  {address:12} scram-sha-256",
                      f"host     all      all  {address:12} scram-sha-256"]
        if self.settings.postgres.host not in _LOOPBACK:
            # Beyond loopback only over TLS: a host line without ssl matches nothing here.
            rules.append("hostssl  all      all  all          scram-sha-256")
        return rules

    def _write_hba(self) -> None:
        self._write_owned(self.data_dir / "pg_hba.conf",
                          ("\n".join(self._hba_rules()) + "\n").encode())

    def _hba_is_ours(self) -> bool:
        try:
            return (self.data_dir / "pg_hba.conf").read_text().startswith(_HBA_HEADER)
        except OSError:
            return False

    def _secure_legacy(self) -> None:
        """A cluster made before passwords everywhere trusts the socket: give `postgres`
        its password over that socket, then put our rules in place and reload."""
        if self._hba_is_ours():
            return
        import psycopg
        from psycopg import sql

        password = self.credentials()["superuser_password"]
        with psycopg.connect(host=str(self.run_dir), port=self.port(), user="postgres",
                             dbname="postgres", autocommit=True, connect_timeout=10) as conn:
            conn.execute(sql.SQL("ALTER ROLE postgres PASSWORD {}").format(sql.Literal(password)))
            self._write_tls()
            self._write_hba()
            conn.execute("SELECT pg_reload_conf()")
        log.warning("postgres cluster secured: passwords on every login, trust removed",
                    data_dir=str(self.data_dir))

    def _write_owned(self, path: Path, data: bytes) -> None:
        """A file only the server's OS user (and root) may read."""
        from soundscape.infra.certs import write_private

        write_private(path, data)
        if self._run_as():
            user = pwd.getpwnam(self.settings.postgres.os_user)
            os.chown(path, user.pw_uid, user.pw_gid)

    # ---- roles and database ------------------------------------------------------------
    def credentials(self) -> dict[str, str]:
        """Role passwords: from the settings if given, else generated once and kept (0600)."""
        pg = self.settings.postgres
        stored = process.read_json(self.credentials_file) or {}
        creds = {
            "superuser_password": (
                pg.superuser_password.get_secret_value()
                if pg.superuser_password
                else stored.get("superuser_password") or secrets.token_urlsafe(24)
            ),
        }
        for role in ROLES:
            configured = getattr(pg, f"{role}_password")
            creds[f"{role}_password"] = (configured.get_secret_value() if configured
                                         else stored.get(f"{role}_password")
                                         or secrets.token_urlsafe(24))
        if creds != stored:
            process.write_json(self.credentials_file, creds, mode=0o600)
        return creds

    def superuser_connect(self, dbname: str = "postgres"):  # type: ignore[no-untyped-def]
        import psycopg

        return psycopg.connect(
            host=str(self.run_dir), port=self.port(), user="postgres", dbname=dbname,
            password=self.credentials()["superuser_password"], autocommit=True,
            connect_timeout=10,
        )

    def bootstrap(self) -> None:
        """Create or update the database and its two roles; safe to run at every start."""
        bootstrap_database(self.superuser_connect, self.settings, self.credentials())

    def grant_roles(self, database: str) -> None:
        grant_roles(self.superuser_connect, self.settings, database)

    def url(self, role: Role = "writer", database: str | None = None) -> str | None:
        """libpq URL (psql accepts it; SQLAlchemy after `sqlalchemy_url`)."""
        if self.port() is None:
            return None
        self.credentials()  # generated once, before the first URL is handed out
        return local_postgres_url(self.settings, role, database)
