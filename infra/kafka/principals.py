"""Principals on the local broker: SCRAM credentials and least-privilege ACLs.

Each station is the Kafka user `User:<station_id>`; it may WRITE (idempotently: WRITE on
a topic implies it since Kafka 3.0) the audio and heartbeat topics and nothing else: it
cannot read any topic, join a group, write results, or create or delete topics.

Services that run on other machines than the broker (`soundscape services add ROLE NAME`)
are users of their own, with what their role reads and writes and nothing more:
- worker: READ audio, its group; WRITE detections and the audio DLQ; its transactional
  ids (`<worker.group_id>-*`). Only workers can write detections;
- sink: READ detections, heartbeats and drift, its group; WRITE the results DLQ; its
  transactional ids (`<sink.group_id>-sink-*`);
- replay: WRITE audio (an archive's chunks, signed with the archive's key);
- drift: READ detections, WRITE drift, its group, and the state topics and transactional
  ids faust makes under its app id (`<drift.app_id>-`), which it may create;
- clips: READ detections and audio (the clip keeper), its group and `<group>-audio`;
- notify: READ detections and drift, its group (the notifier).
In the remote-stations profile this machine's own services are such principals too
(`<role>.local`, made by `infra up`: ensure_local_services).
The StandardAuthorizer denies what no ACL allows. Changes go through the loopback listener
as a super user: anonymous (single-host) or the broker's admin (remote-stations)
(docs/explanation/security.md).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialDeletion,
    UserScramCredentialUpsertion,
)
from confluent_kafka.error import KafkaException

from soundscape.errors import ServiceError
from soundscape.kafka_clients import admin_config
from soundscape.local_services import LOCAL_SERVICE_NAME
from soundscape.settings import Settings

#: PBKDF2 rounds of the stored SCRAM secret (Kafka accepts 4096 to 16384).
SCRAM_ITERATIONS = 8192
_TIMEOUT_S = 30.0


#: The roles `services add` gives; a station's is `station`.
SERVICE_ROLES = ("worker", "sink", "replay", "drift", "clips", "notify")


def _allow(principal: str, kind: ResourceType, name: str, operation: AclOperation,
           pattern: ResourcePatternType = ResourcePatternType.LITERAL) -> AclBinding:
    return AclBinding(kind, name, pattern, principal, "*", operation, AclPermissionType.ALLOW)


def role_acls(settings: Settings, role: str, name: str) -> list[AclBinding]:
    """What principal `name` in `role` may do, and nothing else."""
    principal, topics = f"User:{name}", settings.topics
    T, G, X = ResourceType.TOPIC, ResourceType.GROUP, ResourceType.TRANSACTIONAL_ID
    R, W, D = AclOperation.READ, AclOperation.WRITE, AclOperation.DESCRIBE
    prefixed = ResourcePatternType.PREFIXED
    if role == "station":
        # edge results: the station's own scores (station.edge_bundle), signed by its key
        rights = [(T, topics.audio, W), (T, topics.heartbeats, W), (T, topics.edge_detections, W)]
    elif role == "replay":
        rights = [(T, topics.audio, W)]
    elif role == "worker":
        group = settings.worker.group_id
        rights = [(T, topics.audio, R), (T, topics.detections, W), (T, topics.audio_dlq, W),
                  (T, topics.audio_dlq, AclOperation.DESCRIBE_CONFIGS), (G, group, R),
                  (T, topics.shadow_detections, W)]
        return [_allow(principal, *right) for right in rights] + [
            _allow(principal, X, f"{group}-", op, prefixed) for op in (W, D)] + [
            _allow(principal, G, f"{group}-shadow-", R, prefixed)]  # `worker --shadow`
    elif role == "sink":
        group = settings.sink.group_id
        rights = [(T, topics.detections, R), (T, topics.heartbeats, R), (T, topics.drift, R),
                  (T, topics.results_dlq, W), (G, group, R),
                  (T, topics.shadow_detections, R), (G, f"{group}-shadow", R),  # `sink --shadow`
                  (T, topics.edge_detections, R), (G, f"{group}-edge", R)]  # `sink --edge`
        return [_allow(principal, *right) for right in rights] + [
            _allow(principal, X, f"{group}-sink-", op, prefixed) for op in (W, D)]
    elif role == "drift":
        app = settings.drift.app_id
        rights = [(T, topics.detections, R), (T, topics.drift, W), (G, app, R)]
        state_topics = [_allow(principal, T, f"{app}-", op, prefixed)
                        for op in (AclOperation.CREATE, R, W, D, AclOperation.DESCRIBE_CONFIGS)]
        return [_allow(principal, *right) for right in rights] + state_topics + [
            _allow(principal, X, f"{app}-", op, prefixed) for op in (W, D)]
    elif role == "clips":  # reads results, and single chunks of audio at their offsets
        group = settings.clips.group_id
        rights = [(T, topics.detections, R), (T, topics.audio, R), (G, group, R),
                  (G, f"{group}-audio", R)]
    elif role == "notify":  # reads results and drift reports, writes nothing to Kafka
        rights = [(T, topics.detections, R), (T, topics.drift, R),
                  (G, settings.notify.group_id, R)]
    else:
        raise ValueError(f"unknown role {role!r}; one of station, {', '.join(SERVICE_ROLES)}")
    return [_allow(principal, *right) for right in rights]


def station_acls(settings: Settings, station_id: str) -> list[AclBinding]:
    return role_acls(settings, "station", station_id)


def _admin(settings: Settings) -> AdminClient:
    return AdminClient(admin_config(settings))


def _wait(futures: dict[Any, Any], what: str) -> list[Any]:
    results = []
    for key, future in futures.items():
        try:
            results.append(future.result(timeout=_TIMEOUT_S))
        except KafkaException as exc:
            raise ServiceError(f"{what} failed for {key}: {exc.args[0].str()}",
                               hint="is the local broker up? `soundscape infra status`") from None
    return results


def add_station(settings: Settings, station_id: str, password: str) -> None:
    """Create or replace the station's SCRAM-SHA-512 credential and its ACLs (station_acls)."""
    add_principal(settings, "station", station_id, password)


def add_principal(settings: Settings, role: str, name: str, password: str) -> None:
    """Create or replace the user's SCRAM-SHA-512 credential and its role's ACLs."""
    acls = role_acls(settings, role, name)  # an unknown role changes nothing
    upsert = UserScramCredentialUpsertion(
        name, ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, SCRAM_ITERATIONS),
        password.encode())
    admin = _admin(settings)
    _wait(admin.alter_user_scram_credentials([upsert], request_timeout=_TIMEOUT_S),
          "storing the SCRAM credential")
    _wait(admin.create_acls(acls, request_timeout=_TIMEOUT_S), "creating the ACLs")


def service_user(role: str, name: str) -> str:
    """The Kafka user of a service: `<role>.<name>` (station ids have no dot: no clash)."""
    return f"{role}.{name}"


def revoke_station(settings: Settings, station_id: str) -> dict[str, int]:
    return revoke_principal(settings, station_id)


def revoke_principal(settings: Settings, user: str) -> dict[str, int]:
    """Remove the credential (new connections fail) and every ACL of the principal (the
    open connection's next request is refused). Returns what was removed."""
    admin = _admin(settings)
    removed = {"credentials": 0, "acls": 0}
    known = users_with_credentials(settings)
    if user in known:
        deletion = UserScramCredentialDeletion(user, ScramMechanism.SCRAM_SHA_512)
        _wait(admin.alter_user_scram_credentials([deletion], request_timeout=_TIMEOUT_S),
              "deleting the SCRAM credential")
        removed["credentials"] = 1
    everything = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY,
                                  f"User:{user}", None, AclOperation.ANY,
                                  AclPermissionType.ANY)
    for bindings in _wait(admin.delete_acls([everything], request_timeout=_TIMEOUT_S),
                          "deleting the ACLs"):
        removed["acls"] += len(bindings)
    return removed


def users_with_credentials(settings: Settings) -> list[str]:
    """Every SCRAM user of the broker: stations and services."""
    admin = _admin(settings)
    try:
        # Asked for every user (no list), the client answers with one future of a dict.
        found = admin.describe_user_scram_credentials(request_timeout=_TIMEOUT_S).result(
            timeout=_TIMEOUT_S)
    except KafkaException as exc:
        raise ServiceError(f"listing SCRAM users failed: {exc.args[0].str()}",
                           hint="is the local broker up? `soundscape infra status`") from None
    return sorted(found)


def acls_of(settings: Settings, station_id: str) -> list[AclBinding]:
    pattern = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY,
                               f"User:{station_id}", None, AclOperation.ANY, AclPermissionType.ANY)
    admin = _admin(settings)  # held until the answer is in: a collected client cancels it
    return list(admin.describe_acls(pattern, request_timeout=_TIMEOUT_S).result(
        timeout=_TIMEOUT_S))


def ensure_local_services(settings: Settings,
                          password_of: Callable[[str], str]) -> list[str]:
    """The remote-stations profile: this machine's services as principals `<role>.local`
    with their role's ACLs (idempotent: `infra up` runs it each time, so new roles and
    changed group ids reach an existing broker). `password_of(user)` gives each password."""
    made = []
    for role in SERVICE_ROLES:
        user = service_user(role, LOCAL_SERVICE_NAME)
        add_principal(settings, role, user, password_of(user))
        made.append(user)
    return made
