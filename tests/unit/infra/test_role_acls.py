"""Each role's ACLs are exactly what it reads and writes: only a worker may write
detections; transactional ids are prefixed by the role's group; nothing may create,
delete or alter anything."""

from __future__ import annotations

import pytest
from confluent_kafka.admin import AclOperation, ResourcePatternType, ResourceType

from soundscape.infra.kafka.principals import SERVICE_ROLES, role_acls, service_user
from soundscape.settings import Settings

pytestmark = pytest.mark.unit


def _rights(role: str) -> set[tuple[str, str, str]]:
    return {(b.restype.name, b.name, b.operation.name)
            for b in role_acls(Settings(), role, service_user(role, "x"))}


def test_only_the_worker_writes_detections() -> None:
    detections = Settings().topics.detections
    writers = [role for role in (*SERVICE_ROLES, "station")
               if ("TOPIC", detections, "WRITE") in _rights(role)]
    assert writers == ["worker"]


def test_the_worker_and_sink_get_their_groups_and_transactional_prefixes() -> None:
    s = Settings()
    worker = role_acls(s, "worker", "worker.x")
    prefixed = {(b.name, b.operation) for b in worker if b.restype == ResourceType.TRANSACTIONAL_ID
                and b.resource_pattern_type == ResourcePatternType.PREFIXED}
    assert prefixed == {(f"{s.worker.group_id}-", AclOperation.WRITE),
                        (f"{s.worker.group_id}-", AclOperation.DESCRIBE)}
    assert ("GROUP", s.sink.group_id, "READ") in _rights("sink")
    assert ("TOPIC", s.topics.results_dlq, "WRITE") in _rights("sink")
    assert ("TOPIC", s.topics.audio, "READ") not in _rights("sink")


def test_no_role_may_create_delete_or_alter_save_drift_its_own_state_topics() -> None:
    for role in (*SERVICE_ROLES, "station"):
        operations = {op for _, _, op in _rights(role)}
        assert operations <= {"READ", "WRITE", "DESCRIBE", "DESCRIBE_CONFIGS", "CREATE"}, role
        creates = [b for b in role_acls(Settings(), role, service_user(role, "x"))
                   if b.operation == AclOperation.CREATE]
        if role != "drift":
            assert not creates, role
            continue
        app = Settings().drift.app_id
        assert [(b.restype, b.name, b.resource_pattern_type) for b in creates] == [
            (ResourceType.TOPIC, f"{app}-", ResourcePatternType.PREFIXED)]
        assert all(b.principal == f"User:{service_user(role, 'x')}"
                   for b in role_acls(Settings(), role, service_user(role, "x")))


def test_an_unknown_role_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown role"):
        role_acls(Settings(), "admin", "admin.x")


def test_drift_reads_detections_and_writes_drift_reports_only() -> None:
    s = Settings()
    literal_topics = {(name, op) for kind, name, op in _rights("drift") if kind == "TOPIC"
                      and not name.endswith("-")}
    assert literal_topics == {(s.topics.detections, "READ"), (s.topics.drift, "WRITE")}
    assert ("GROUP", s.drift.app_id, "READ") in _rights("drift")


def test_the_clip_keeper_reads_results_and_audio_and_writes_nothing() -> None:
    s = Settings()
    assert _rights("clips") == {
        ("TOPIC", s.topics.detections, "READ"), ("TOPIC", s.topics.audio, "READ"),
        ("GROUP", s.clips.group_id, "READ"), ("GROUP", f"{s.clips.group_id}-audio", "READ")}


def test_services_add_offers_every_service_role() -> None:
    from soundscape.app.enrol_cli import _COMMANDS

    assert tuple(_COMMANDS) == SERVICE_ROLES


def test_stations_write_their_edge_results_and_only_the_sink_reads_them() -> None:
    s = Settings()
    edge = s.topics.edge_detections
    assert _rights("station") == {("TOPIC", s.topics.audio, "WRITE"),
                                  ("TOPIC", s.topics.heartbeats, "WRITE"),
                                  ("TOPIC", edge, "WRITE")}
    readers = [role for role in (*SERVICE_ROLES, "station") if ("TOPIC", edge, "READ") in _rights(role)]
    assert readers == ["sink"]
    assert ("GROUP", f"{s.sink.group_id}-edge", "READ") in _rights("sink")
    writers = [role for role in (*SERVICE_ROLES, "station") if ("TOPIC", edge, "WRITE") in _rights(role)]
    assert writers == ["station"]
