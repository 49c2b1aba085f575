"""A local Kafka cluster: three KRaft nodes (broker and controller each) on this machine.

`soundscape infra up --brokers 3` runs what large deployments run, at small scale: each
node its own JVM, ports and folder (`kafka/node-N/`), the three forming the controller
quorum; topics get replication factor 3 with min.insync.replicas 2 and producers write
with acks=all, so one node may die (kill -9, `infra kill-broker N`) with nothing lost
and nothing refused, and the quorum goes on. `kafka/state.json` records the nodes, so
every command and service on this machine reaches the cluster through all three
(`local_kafka_address`). The single broker stays the default for the demo.

A local cluster runs the single-host security profile.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from soundscape.errors import ServiceError
from soundscape.infra import process
from soundscape.infra.kafka.broker import KafkaBroker, NodeLayout, _new_cluster_id
from soundscape.kafka_clients import admin_config
from soundscape.local_services import kafka_state_file, local_kafka_secured
from soundscape.logs import get_logger
from soundscape.settings import Settings

log = get_logger(__name__)


@dataclass(frozen=True)
class NodeStatus:
    node_id: int
    running: bool
    pid: int | None
    address: str


class KafkaCluster:
    def __init__(self, settings: Settings, nodes: int = 3) -> None:
        if nodes < 3:
            raise ServiceError("a local cluster has three nodes or more",
                               hint="leave out --brokers for the single broker")
        self.settings = settings
        self.nodes = nodes
        self.home = settings.state_dir / "kafka"
        self.state_file = kafka_state_file(settings)

    # ---- layout ------------------------------------------------------------------------
    def _layouts(self) -> list[NodeLayout]:
        state = process.read_json(self.state_file) or {}
        recorded = state.get("nodes") or []
        if state.get("port") and not recorded:
            raise ServiceError(
                f"{self.home} holds the single broker's data",
                hint="`soundscape infra down && soundscape infra reset --kafka` first: a "
                     "cluster starts from empty folders")
        if recorded and len(recorded) != self.nodes:
            raise ServiceError(f"the local cluster in {self.home} has {len(recorded)} nodes",
                               hint="use --brokers with that number, or reset it")
        if not recorded:
            host, taken = self.settings.kafka.host, set()
            for node_id in range(1, self.nodes + 1):
                ports = []
                while len(ports) < 3:
                    port = process.free_port(host)
                    if port not in taken:
                        taken.add(port)
                        ports.append(port)
                recorded.append({"id": node_id, "port": ports[0], "controller_port": ports[1],
                                 "stations_port": ports[2]})
            state = {"version": self.settings.kafka.version, "cluster_id": _new_cluster_id(),
                     "nodes": recorded, "port": recorded[0]["port"],
                     "stations_port": recorded[0]["stations_port"]}
            self.home.mkdir(parents=True, exist_ok=True)
            self.home.chmod(0o700)
            process.write_json(self.state_file, state)
        host = self.settings.kafka.host
        voters = ",".join(f"{n['id']}@{host}:{n['controller_port']}" for n in recorded)
        return [NodeLayout(n["id"], self.home / f"node-{n['id']}", n["port"],
                           n["controller_port"], n["stations_port"], voters,
                           state["cluster_id"], self.nodes) for n in recorded]

    def node(self, node_id: int) -> KafkaBroker:
        layouts = {layout.node_id: layout for layout in self._layouts()}
        if node_id not in layouts:
            raise ServiceError(f"no broker {node_id} in the local cluster",
                               hint=f"brokers are 1..{self.nodes}")
        return KafkaBroker(self.settings, layouts[node_id])

    def brokers(self) -> list[KafkaBroker]:
        return [KafkaBroker(self.settings, layout) for layout in self._layouts()]

    # ---- lifecycle ---------------------------------------------------------------------
    def start(self) -> list[NodeStatus]:
        """Start every node that is not running (all launched before any is awaited: a
        node is ready only once the quorum is)."""
        if local_kafka_secured(self.settings):
            raise ServiceError("a local cluster runs the single-host security profile",
                               hint="unset SOUNDSCAPE_SECURITY__PROFILE, or run one broker")
        launched = []
        for broker in self.brokers():
            if broker.pid() is None:
                java, classpath = broker.prepare()
                launched.append((broker, broker.launch(java, classpath)))
        for broker, proc in launched:
            if not broker._wait_ready(proc, broker.node_address()):
                for other, other_proc in launched:
                    if other_proc.poll() is None:
                        process.terminate(other_proc.pid, timeout_s=10)
                broker._fail_start(proc, broker.node_address())
        self.wait_for_quorum()
        return self.status()

    def start_node(self, node_id: int) -> NodeStatus:
        broker = self.node(node_id)
        if broker.pid() is None:
            java, classpath = broker.prepare()
            proc = broker.launch(java, classpath)
            if not broker._wait_ready(proc, broker.node_address()):
                broker._fail_start(proc, broker.node_address())
        return self._status_of(broker)

    def kill_node(self, node_id: int) -> bool:
        return self.node(node_id).kill()

    def stop(self, timeout_s: float = 60.0) -> bool:
        """Stop every node at once; True if any was running."""
        brokers = self.brokers()
        pids = [pid for pid in (b.pid() for b in brokers) if pid is not None]
        if pids and not process.terminate_all(pids, timeout_s):
            raise ServiceError(f"Kafka nodes {pids} did not stop",
                               hint=f"kill -9 {' '.join(map(str, pids))}")
        for broker in brokers:
            broker.pid_file.unlink(missing_ok=True)
        return bool(pids)

    def wait_for_quorum(self, timeout_s: float | None = None) -> None:
        """Until every running node lists every running node in its metadata (each node's
        cache fills on its own: asking one would let a client meet another that still
        knows two)."""
        from confluent_kafka.admin import AdminClient

        running = [b for b in self.brokers() if b.pid() is not None]
        admins = [AdminClient(admin_config(self.settings)
                              | {"bootstrap.servers": b.node_address()}) for b in running]
        deadline = time.monotonic() + (timeout_s or self.settings.kafka.start_timeout_s)
        while time.monotonic() < deadline:
            try:
                if all(len(a.list_topics(timeout=2).brokers) >= len(running) for a in admins):
                    return
            except Exception:  # noqa: BLE001 - electing a controller; retried to the deadline
                pass
            time.sleep(0.3)
        raise ServiceError("the local cluster's brokers did not all register in time",
                           hint=f"see {self.home}/node-*/logs/server.log")

    # ---- status ------------------------------------------------------------------------
    def status(self) -> list[NodeStatus]:
        return [self._status_of(broker) for broker in self.brokers()]

    def _status_of(self, broker: KafkaBroker) -> NodeStatus:
        pid = broker.pid()
        assert broker.layout is not None
        return NodeStatus(broker.layout.node_id, pid is not None, pid, broker.node_address())

    def health(self, timeout_s: float = 5.0) -> dict[str, Any]:
        """Brokers in the metadata, the active controller, and under-replicated partitions
        (fewer in-sync replicas than replicas) per topic."""
        from confluent_kafka.admin import AdminClient

        admin = AdminClient(admin_config(self.settings))
        metadata = admin.list_topics(timeout=timeout_s)
        controller = None
        try:
            controller = admin.describe_cluster(request_timeout=timeout_s).result().controller.id
        except Exception:  # noqa: BLE001 - old brokers or a controller moving: say unknown
            pass
        under = {}
        for name, topic in metadata.topics.items():
            count = sum(1 for p in topic.partitions.values() if len(p.isrs) < len(p.replicas))
            if count:
                under[name] = count
        return {"brokers_in_metadata": sorted(metadata.brokers), "controller": controller,
                "under_replicated_partitions": sum(under.values()),
                "under_replicated_by_topic": under}


def local_cluster_nodes(settings: Settings) -> int:
    """How many nodes the local Kafka state holds (1: the single broker or none yet)."""
    return len((process.read_json(kafka_state_file(settings)) or {}).get("nodes") or []) or 1
