"""A real Apache Kafka broker (KRaft, broker and controller in one JVM) run from Maven jars.

Layout under the state folder:
    kafka/state.json         version, cluster id, ports chosen on first start
    kafka/server.properties  written at each start from the settings
    kafka/tls/keystore.pem   the server's key and certificate (0600), from certs/
    kafka/data/              the log dirs (formatted once with the cluster id)
    kafka/logs/              server.log (rolled) and the JVM's stdout
    kafka/kafka.pid
and the jars under the cache folder (kept across `infra reset`).

Two client listeners (docs/explanation/security.md):
- PLAINTEXT on `kafka.host` (127.0.0.1): the project's own services on this machine. Its
  clients are anonymous, and User:ANONYMOUS is a super user: this is the documented
  choice for loopback, and why that listener never binds to another address;
- SASL_SSL (SCRAM-SHA-512, the deployment CA's certificate) on `kafka.stations_host`:
  stations, each its own principal with only the ACLs `stations add` gives it.
The StandardAuthorizer denies everything no ACL allows.

In the remote-stations profile (`security.profile`) there is no anonymous listener: the
loopback listener and the controller's take SASL/PLAIN with the broker's own `admin` user
only (its password in kafka/credentials.json, 0600, and in server.properties, 0600), the
only super user; the machine's own services are SCRAM principals like remote ones.
"""

from __future__ import annotations

import base64
import json
import secrets
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from soundscape.errors import ServiceError
from soundscape.infra import process
from soundscape.infra.certs import cert_paths, ensure_certs, write_private
from soundscape.infra.kafka.jars import KafkaJars
from soundscape.kafka_clients import ENVELOPE_OVERHEAD_BYTES, admin_config
from soundscape.local_services import (
    KAFKA_ADMIN_USER,
    kafka_credentials_file,
    kafka_state_file,
    local_kafka_address,
    local_kafka_secured,
)
from soundscape.logs import get_logger
from soundscape.settings import Settings

log = get_logger(__name__)

_TEMPLATE_DIR = Path(__file__).parent
_MAIN_CLASS = "kafka.Kafka"
_LOOPBACK = ("127.0.0.1", "localhost", "::1")
_ANONYMOUS = "User:ANONYMOUS"


@dataclass(frozen=True)
class BrokerStatus:
    running: bool
    pid: int | None
    bootstrap: str | None
    version: str
    log_file: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "running": self.running,
            "pid": self.pid,
            "bootstrap_servers": self.bootstrap,
            "version": self.version,
            "log": self.log_file,
        }


@dataclass(frozen=True)
class NodeLayout:
    """One node of a local cluster (infra/kafka/cluster.py): its id, folder, ports, the
    quorum's voters and the cluster id, all decided by the cluster."""

    node_id: int
    home: Path
    port: int
    controller_port: int
    stations_port: int
    voters: str  # controller.quorum.voters, e.g. 1@127.0.0.1:9093,2@...
    cluster_id: str
    nodes: int


class KafkaBroker:
    def __init__(self, settings: Settings, layout: NodeLayout | None = None) -> None:
        self.settings = settings
        #: None: the single broker (kafka/); else one node of a local cluster.
        self.layout = layout
        self.home = layout.home if layout else settings.state_dir / "kafka"
        self.data_dir = self.home / "data"
        self.log_dir = self.home / "logs"
        self.state_file = kafka_state_file(settings)
        self.pid_file = self.home / "kafka.pid"
        self.config_file = self.home / "server.properties"
        self.log4j_file = self.home / "log4j2.properties"
        self.keystore = self.home / "tls" / "keystore.pem"
        self.jars = KafkaJars(settings.cache_dir, settings.kafka.version)
        self.credentials_file = kafka_credentials_file(settings)

    # ---- state -------------------------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        return process.read_json(self.state_file) or {}

    def bootstrap_address(self) -> str | None:
        return local_kafka_address(self.settings)

    def pid(self) -> int | None:
        """The broker's pid if it runs (checked against its command line, not just the number)."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        if process.pid_alive(pid) and str(self.config_file) in process.process_cmdline(pid):
            return pid
        return None

    def status(self) -> BrokerStatus:
        pid = self.pid()
        return BrokerStatus(
            running=pid is not None,
            pid=pid,
            bootstrap=self.bootstrap_address(),
            version=self._state().get("version", self.settings.kafka.version),
            log_file=str(self.log_dir / "server.log"),
        )

    # ---- lifecycle ---------------------------------------------------------------------
    def start(self) -> BrokerStatus:
        """Start the broker if it is not running; idempotent."""
        if self.pid() is not None:
            self._check_running_profile()
            return self.status()
        java, classpath = self.prepare()
        proc = self.launch(java, classpath)
        address = self.node_address()
        if not self._wait_ready(proc, address):
            self._fail_start(proc, address)
        return self.status()

    def launch(self, java: str, classpath: str) -> subprocess.Popen[bytes]:
        """Start the JVM on the written config (not waiting for it to be ready)."""
        stdout_path = self.log_dir / "stdout.log"
        heap = self.settings.kafka.heap
        command = [
            java,
            f"-Xms{heap}",
            f"-Xmx{heap}",
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.log4j_file}",
            f"-Dkafka.logs.dir={self.log_dir}",
            "-cp",
            classpath,
            _MAIN_CLASS,
            str(self.config_file),
        ]
        with open(stdout_path, "ab") as stdout:
            proc = subprocess.Popen(
                command,
                stdout=stdout,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.home,
                start_new_session=True,
            )
        self.pid_file.write_text(f"{proc.pid}\n")
        return proc

    def node_address(self) -> str:
        """host:port of this node's own client listener."""
        port = self.layout.port if self.layout else self._state().get("port")
        return f"{self.settings.kafka.host}:{port}"

    def prepare(self) -> tuple[str, str]:
        """(java, classpath) with this node's config written and its storage formatted."""
        java = process.require_tool(
            "java", "install a Java 17+ runtime: `bash infra/setup.sh` (openjdk-17-jre-headless)"
        )
        classpath = self.jars.ensure()
        state = self._prepare_state() if self.layout is None else self._node_state()
        self._write_config(state)
        self._format_if_needed(java, classpath, state)
        return java, classpath

    def _fail_start(self, proc: subprocess.Popen[bytes], address: str) -> None:
        process.terminate(proc.pid, timeout_s=10)
        self.pid_file.unlink(missing_ok=True)
        raise ServiceError(
            f"Kafka did not become ready on {address} within "
            f"{self.settings.kafka.start_timeout_s:.0f} s; last log lines:\n"
            + process.tail(self.log_dir / "server.log")
            + "\n"
            + process.tail(self.log_dir / "stdout.log", 5),
            hint=f"see {self.log_dir}; `soundscape infra reset` clears a broken state folder",
        )

    def kill(self) -> bool:
        """SIGKILL, as a crash would (for `infra kill-broker` and fault tests)."""
        pid = self.pid()
        if pid is None:
            return False
        process.kill_hard(pid)
        return True

    def stop(self, timeout_s: float = 60.0) -> bool:
        """Stop the broker; True if one was running. Leaves no process and no lock behind."""
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        if not process.terminate(pid, timeout_s=timeout_s):
            raise ServiceError(f"Kafka (pid {pid}) did not stop", hint=f"kill -9 {pid}")
        self.pid_file.unlink(missing_ok=True)
        return True

    # ---- internals ---------------------------------------------------------------------
    def _node_state(self) -> dict[str, Any]:
        layout = self.layout
        assert layout is not None
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.home.chmod(0o700)
        return {"port": layout.port, "controller_port": layout.controller_port,
                "stations_port": layout.stations_port, "cluster_id": layout.cluster_id}

    def _prepare_state(self) -> dict[str, Any]:
        kafka = self.settings.kafka
        state = self._state()
        if state and state.get("version") not in (None, kafka.version):
            raise ServiceError(
                f"the Kafka state in {self.home} was made by Kafka {state['version']}, "
                f"settings ask for {kafka.version}",
                hint="set SOUNDSCAPE_KAFKA__VERSION back, or `soundscape infra reset --kafka`",
            )
        port = process.choose_port(kafka.port, state.get("port"), kafka.host, "Kafka")
        cport = process.choose_port(
            kafka.controller_port, state.get("controller_port"), kafka.host, "Kafka controller"
        )
        if cport == port:
            cport = process.free_port(kafka.host)
        sport = process.choose_port(
            kafka.stations_port, state.get("stations_port"), kafka.stations_host,
            "Kafka stations listener")
        while sport in (port, cport):
            sport = process.free_port(kafka.stations_host)
        state |= {
            "version": kafka.version,
            "cluster_id": state.get("cluster_id") or _new_cluster_id(),
            "port": port,
            "controller_port": cport,
            "stations_port": sport,
        }
        self.log_dir.mkdir(parents=True, exist_ok=True)
        # The log segments hold every topic: no other account may read them past the ACLs.
        self.home.chmod(0o700)
        process.write_json(self.state_file, state)
        return state

    def stations_address(self) -> str | None:
        """host:port stations reach the SASL_SSL listener at, or None before the first start."""
        port = self.layout.stations_port if self.layout else self._state().get("stations_port")
        kafka = self.settings.kafka
        return f"{kafka.stations_advertised_host or kafka.stations_host}:{port}" if port else None

    def _write_keystore(self) -> None:
        ensure_certs(self.settings)
        paths = cert_paths(self.settings)
        self.keystore.parent.mkdir(parents=True, exist_ok=True)
        self.keystore.parent.chmod(0o700)
        write_private(self.keystore,
                      paths.server_key.read_bytes() + paths.server_cert.read_bytes())

    def _write_config(self, state: dict[str, Any]) -> None:
        kafka, topics = self.settings.kafka, self.settings.topics
        host, port, cport = kafka.host, state["port"], state["controller_port"]
        if host not in _LOOPBACK:
            raise ServiceError(
                f"kafka.host is {host!r}: the local broker's unauthenticated listener binds to "
                "loopback only",
                hint="let remote stations in through the SASL_SSL listener instead: set "
                     "SOUNDSCAPE_KAFKA__STATIONS_HOST (docs/explanation/security.md)")
        self._write_keystore()
        stations = f"{kafka.stations_host}:{state['stations_port']}"
        message_max = kafka.max_message_bytes + ENVELOPE_OVERHEAD_BYTES
        secured = local_kafka_secured(self.settings)
        local, protocol = ("LOCAL", "SASL_PLAINTEXT") if secured else ("PLAINTEXT", "PLAINTEXT")
        node_id, voters = (self.layout.node_id, self.layout.voters) if self.layout else \
            (1, f"1@{host}:{cport}")
        lines: dict[str, Any] = {
            "process.roles": "broker,controller",
            "node.id": node_id,
            "controller.quorum.voters": voters,
            "listeners": f"{local}://{host}:{port},CONTROLLER://{host}:{cport},"
                         f"STATIONS://{stations}",
            "advertised.listeners": f"{local}://{host}:{port},"
                                    f"STATIONS://{self.stations_address()}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": local,
            "listener.security.protocol.map":
                f"{local}:{protocol},CONTROLLER:{protocol},STATIONS:SASL_SSL",
            "sasl.enabled.mechanisms": "SCRAM-SHA-512",
            "listener.name.stations.sasl.enabled.mechanisms": "SCRAM-SHA-512",
            "listener.name.stations.scram-sha-512.sasl.jaas.config":
                "org.apache.kafka.common.security.scram.ScramLoginModule required;",
            "listener.name.stations.ssl.keystore.type": "PEM",
            "listener.name.stations.ssl.keystore.location": self.keystore,
            "ssl.enabled.protocols": "TLSv1.3,TLSv1.2",
            "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "allow.everyone.if.no.acl.found": "false",
            # single-host: loopback PLAINTEXT and the controller are anonymous, the project's
            # own services; remote-stations: the broker's admin only.
            "super.users": self._super_user(),
            "log.dirs": self.data_dir,
            "num.partitions": topics.partitions,
            "auto.create.topics.enable": "false",
            # One local broker: 50 partitions each (the defaults) only slow the first group
            # and the first transaction, which create these topics on demand.
            "offsets.topic.num.partitions": 10,
            "transaction.state.log.num.partitions": 10,
            "offsets.topic.replication.factor": 1,
            "transaction.state.log.replication.factor": 1,
            "transaction.state.log.min.isr": 1,
            "share.coordinator.state.topic.replication.factor": 1,
            "share.coordinator.state.topic.min.isr": 1,
            "group.initial.rebalance.delay.ms": 0,
            "message.max.bytes": message_max,
            "replica.fetch.max.bytes": message_max,
            "log.retention.hours": topics.retention_hours,
            "log.segment.bytes": 256 * 1024 * 1024,
            "num.recovery.threads.per.data.dir": 2,
        }
        if self.layout is not None and self.layout.nodes >= 3:
            # A cluster keeps every record on three nodes and accepts a write (acks=all)
            # while two hold it, so one node may die without losing or refusing anything.
            replicas = {"offsets.topic.replication.factor": 3,
                        "transaction.state.log.replication.factor": 3,
                        "transaction.state.log.min.isr": 2,
                        "share.coordinator.state.topic.replication.factor": 3,
                        "share.coordinator.state.topic.min.isr": 2,
                        "default.replication.factor": 3, "min.insync.replicas": 2,
                        # a dead node leaves the in-sync set (and shows as
                        # under-replicated in `infra status`) after 10 s, not 30
                        "replica.lag.time.max.ms": 10_000}
            lines |= replicas
        if secured:
            lines |= self._admin_only_lines()
        text = "# Written by `soundscape infra up` from the settings; edits are overwritten.\n"
        text += "".join(f"{key}={value}\n" for key, value in lines.items())
        write_private(self.config_file, text.encode())
        template = (_TEMPLATE_DIR / "log4j2.properties").read_text()
        self.log4j_file.write_text(template.replace("@LOG_DIR@", str(self.log_dir)))

    def _check_running_profile(self) -> None:
        """A running broker keeps the profile it started with: say so, rather than let
        clients of the other profile time out against its listeners."""
        try:
            started = _read_properties(self.config_file).get("super.users")
        except OSError:
            return
        if started is not None and started != self._super_user():
            running = "single-host" if started == _ANONYMOUS else "remote-stations"
            raise ServiceError(
                f"the local broker runs the {running} profile, the settings ask for "
                f"{self.settings.security.profile}",
                hint="restart it to switch: `soundscape infra down && soundscape infra up`")

    def _super_user(self) -> str:
        return f"User:{KAFKA_ADMIN_USER}" if local_kafka_secured(self.settings) else _ANONYMOUS

    def _admin_only_lines(self) -> dict[str, Any]:
        """The remote-stations profile: loopback and controller listeners take SASL/PLAIN
        with the broker's admin only (the one super user); no anonymous principal at all."""
        password = self.admin_password()
        jaas = ("org.apache.kafka.common.security.plain.PlainLoginModule required "
                f'username="{KAFKA_ADMIN_USER}" password="{password}" '
                f'user_{KAFKA_ADMIN_USER}="{password}";')
        return {
            "sasl.mechanism.inter.broker.protocol": "PLAIN",
            "sasl.mechanism.controller.protocol": "PLAIN",
            "listener.name.local.sasl.enabled.mechanisms": "PLAIN",
            "listener.name.local.plain.sasl.jaas.config": jaas,
            "listener.name.controller.sasl.enabled.mechanisms": "PLAIN",
            "listener.name.controller.plain.sasl.jaas.config": jaas,
        }

    def credentials(self) -> dict[str, str]:
        return process.read_json(self.credentials_file) or {}

    def store_password(self, user: str) -> str:
        """The user's password in the credentials file (0600), made on first use."""
        found = self.credentials()
        if not found.get(user):
            found[user] = secrets.token_urlsafe(32)
            self.credentials_file.parent.mkdir(parents=True, exist_ok=True)
            write_private(self.credentials_file, json.dumps(found, indent=2).encode())
        return found[user]

    def admin_password(self) -> str:
        return self.store_password(KAFKA_ADMIN_USER)

    def _format_if_needed(self, java: str, classpath: str, state: dict[str, Any]) -> None:
        meta = self.data_dir / "meta.properties"
        if meta.exists():
            found = _read_properties(meta).get("cluster.id")
            if found != state["cluster_id"]:
                raise ServiceError(
                    f"Kafka data in {self.data_dir} belongs to cluster {found!r}, "
                    f"state.json says {state['cluster_id']!r}: the state folder is inconsistent",
                    hint="`soundscape infra reset --kafka` wipes the broker's data and starts anew",
                )
            return
        if self.data_dir.exists() and any(self.data_dir.iterdir()):
            raise ServiceError(
                f"{self.data_dir} holds files but no meta.properties: the state folder is corrupt",
                hint="`soundscape infra reset --kafka` wipes the broker's data and starts anew",
            )
        started = time.monotonic()
        result = subprocess.run(
            [
                java,
                f"-Dlog4j2.configurationFile={self.log4j_file}",
                "-cp",
                classpath,
                "kafka.tools.StorageTool",
                "format",
                f"--cluster-id={state['cluster_id']}",  # ids may start with '-
                "-c",
                str(self.config_file),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if result.returncode != 0:
            raise ServiceError(
                "formatting Kafka's storage failed:\n" + (result.stderr or result.stdout)[-2000:],
                hint="`soundscape infra reset --kafka` and try again",
            )
        log.info("kafka storage formatted", seconds=round(time.monotonic() - started, 2))

    def _wait_ready(self, proc: subprocess.Popen[bytes], address: str) -> bool:
        from confluent_kafka.admin import AdminClient

        host, port = address.rsplit(":", 1)
        deadline = time.monotonic() + self.settings.kafka.start_timeout_s

        def listening() -> bool:
            return proc.poll() is not None or process.port_in_use(int(port), host)

        if not process.wait_for(listening, self.settings.kafka.start_timeout_s, 0.2):
            return False
        if proc.poll() is not None:
            return False
        admin = AdminClient(admin_config(self.settings) | {"bootstrap.servers": address,
                                                           "logger": _quiet_logger()})
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                metadata = admin.list_topics(timeout=2)
                if metadata.brokers:
                    return True
            except Exception:  # noqa: BLE001 - broker still starting; retried until deadline
                pass
            time.sleep(0.2)
        return False


def _new_cluster_id() -> str:
    """Kafka's Uuid text form: 16 random bytes, URL-safe base64 without padding."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


def _read_properties(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in path.read_text(errors="replace").splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            values[key.strip()] = value.strip()
    return values


def _quiet_logger() -> Any:
    import logging

    logger = logging.getLogger("soundscape.kafka.admin")
    logger.setLevel(logging.CRITICAL)
    return logger
