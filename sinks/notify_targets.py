"""Where notifications go: MQTT (paho; QoS 1, waiting for the broker's PUBACK) and any
Apprise URL (e-mail, ntfy, Slack, Telegram, a JSON webhook ...). A send raises on
failure, so the notifier retries and the event stays unsent until it went out."""

from __future__ import annotations

import json
import threading
from typing import Any

from soundscape.settings import NotifySettings
from soundscape.sinks.notify_rules import Event

MQTT = "mqtt"


class DeliveryError(RuntimeError):
    """A target did not take the notification (the notifier retries)."""


class MqttTarget:
    """One connection to the MQTT broker, reconnecting as paho does."""

    def __init__(self, settings: NotifySettings, client_id: str) -> None:
        import paho.mqtt.client as mqtt

        self.settings = settings
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                                  clean_session=True)
        if settings.mqtt_username:
            password = settings.mqtt_password.get_secret_value() if settings.mqtt_password \
                else None
            self.client.username_pw_set(settings.mqtt_username, password)
        self._connected = threading.Event()
        self.client.on_connect = lambda *_a, **_k: self._connected.set()
        self.client.on_disconnect = lambda *_a, **_k: self._connected.clear()
        self.client.connect_async(settings.mqtt_host, settings.mqtt_port, keepalive=30)
        self.client.loop_start()

    def send(self, event: Event, timeout_s: float = 10.0) -> None:
        if not self._connected.wait(timeout_s):
            raise DeliveryError(f"MQTT broker {self.settings.mqtt_host}:"
                                f"{self.settings.mqtt_port} not connected")
        topic = self.settings.mqtt_topic
        if event.kind != "detection":
            topic = f"{topic}/events"
        payload = json.dumps({**event.payload, "event_id": event.event_id,
                              "kind": event.kind, "rule": event.rule})
        info = self.client.publish(topic, payload, qos=1)
        try:
            info.wait_for_publish(timeout_s)
        except (RuntimeError, ValueError) as exc:
            raise DeliveryError(f"MQTT publish failed: {exc}") from None
        if not info.is_published():
            raise DeliveryError(f"MQTT broker did not acknowledge within {timeout_s} s")

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


class AppriseTarget:
    def __init__(self, url: str) -> None:
        import apprise

        self.url = url
        self.apprise = apprise.Apprise()
        if not self.apprise.add(url):
            raise ValueError(f"not an Apprise URL it understands: {_mask(url)}")

    def send(self, event: Event) -> None:
        if not self.apprise.notify(title=event.title, body=event.body):
            raise DeliveryError(f"{_mask(self.url)} refused or could not be reached")


class Targets:
    """Every target the rules name, made once."""

    def __init__(self, settings: NotifySettings, client_id: str) -> None:
        names = {target for rule in settings.rules for target in rule.targets}
        self.mqtt = MqttTarget(settings, client_id) if MQTT in names else None
        self.apprise = {url: AppriseTarget(url) for url in sorted(names - {MQTT})}

    def send(self, event: Event, targets: list[str]) -> None:
        for target in targets:
            if target == MQTT:
                assert self.mqtt is not None
                self.mqtt.send(event)
            else:
                self.apprise[target].send(event)

    def close(self) -> None:
        if self.mqtt is not None:
            self.mqtt.close()


def _mask(url: str) -> str:
    """An Apprise URL holds tokens and passwords: only its scheme and host are logged."""
    scheme, _, rest = url.partition("://")
    host = rest.split("/", 1)[0].split("?", 1)[0].rsplit("@", 1)[-1]
    return f"{scheme}://{host}/..."


def describe(targets: list[str]) -> list[Any]:
    return [t if t == MQTT else _mask(t) for t in targets]
