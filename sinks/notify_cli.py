"""`soundscape notify run | test`: notifications by the rules of `notify.rules`."""

from __future__ import annotations

import time
import uuid

import click

from soundscape.cli_context import current_settings, echo_json


@click.group("notify")
def notify() -> None:
    """Notifications: detections of chosen species, silent stations and drift alerts, sent
    to MQTT (BirdNET-Go's topics and fields, for Home Assistant) and Apprise URLs
    (e-mail, ntfy, Slack, Telegram, webhooks), with per-rule rate limits and
    de-duplication. Rules: SOUNDSCAPE_NOTIFY__RULES (JSON) or [notify] in the config file."""


@notify.command("run")
@click.option("--metrics-port", type=int, default=None,
              help="Port of /metrics and /healthz [SOUNDSCAPE_METRICS_PORT]; 0 turns them off.")
def notify_run(metrics_port: int | None) -> None:
    """Send notifications until SIGTERM or Ctrl-C. Each event is sent once: claimed in the
    notifications table before sending, marked after; a failed send is retried and the
    offsets wait for it."""
    from soundscape.errors import UserError
    from soundscape.service_runner import run_service
    from soundscape.sinks.notifier import Notifier

    settings = current_settings("notify")
    if not settings.notify.rules:
        raise UserError("no notification rules are configured",
                        hint='e.g. SOUNDSCAPE_NOTIFY__RULES=\'[{"name": "owls", "species": '
                             '["Strix aluco"], "targets": ["mqtt"]}]\' (docs/notifications.md)')
    stats = run_service(Notifier(settings), metrics_host=settings.metrics_host,
                        metrics_port=settings.metrics_port if metrics_port is None
                        else metrics_port)
    click.echo(f"notifier stopped: {stats.sent} sent, {stats.duplicates} duplicates skipped, "
               f"{stats.cooldown} within cooldown, {stats.rate_limited} rate-limited", err=True)


@notify.command("test")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable.")
def notify_test(as_json: bool) -> None:
    """Send one test message to every target the rules name (nothing is recorded), to
    check addresses and credentials."""
    from soundscape.sinks.notify_rules import Event
    from soundscape.sinks.notify_targets import DeliveryError, Targets, describe

    settings = current_settings()
    targets = Targets(settings.notify, client_id=f"soundscape-notify-test-{uuid.uuid4().hex[:6]}")
    event = Event(event_id=f"test|{uuid.uuid4()}", rule="test", kind="silent",
                  station_id="test", species=None, event_ns=time.time_ns(), confidence=None,
                  title="Soundscape test notification",
                  body="If you read this, Soundscape can reach you.",
                  payload={"test": True})
    outcome: dict[str, str] = {}
    try:
        for name in sorted({t for rule in settings.notify.rules for t in rule.targets}):
            try:
                targets.send(event, [name])
                outcome[describe([name])[0]] = "sent"
            except DeliveryError as exc:
                outcome[describe([name])[0]] = f"failed: {exc}"
    finally:
        targets.close()
    if as_json:
        echo_json(outcome)
        return
    for name, result in outcome.items() or {"(no targets)": "configure notify.rules"}.items():
        click.echo(f"{name}: {result}")
