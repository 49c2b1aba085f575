"""What every room's command line shares: this invocation's settings, JSON output, and one
clear message for a database that cannot be reached.

Room CLIs import this module, never the `soundscape` command that registers them, so the
wiring sits above the rooms and nothing imports it back.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any, ClassVar

import click

from soundscape.errors import ServiceError, UserError
from soundscape.local_services import as_local_service
from soundscape.logs import configure_logging
from soundscape.result_sink import ResultSink, ResultSinkFactory
from soundscape.settings import Settings, load_settings


class App:
    """Settings are built lazily, so `--help` works even with a broken configuration.

    What a room's command needs from another room is handed in here by the wiring
    (app/cli.py sets `result_sinks`), so rooms never import each other."""

    result_sinks: ClassVar[ResultSinkFactory | None] = None

    def __init__(self) -> None:
        self._settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings()
            configure_logging(self._settings.log_level, self._settings.log_format)
        return self._settings

    def open_result_sink(self, application_name: str) -> ResultSink:
        if App.result_sinks is None:
            raise ServiceError("no result sink is wired into this command",
                               hint="run it through the `soundscape` command")
        return App.result_sinks(self.settings, application_name)


pass_app = click.make_pass_decorator(App, ensure=True)


def current_app() -> App:
    return click.get_current_context().ensure_object(App)


def current_settings(role: str | None = None) -> Settings:
    """The settings of the running command (loaded once, logging configured); a service
    names its `role` (worker, sink, drift, replay) to run as its own principal where the
    local broker has no anonymous listener (local_services.as_local_service)."""
    settings = current_app().settings
    return as_local_service(settings, role) if role is not None else settings


def need_module(module: str, extra: str) -> None:
    """Stop with the install command when an optional extra is missing (torch, onnx...)."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise UserError(f"this command needs {module}, which is not installed",
                        hint=f"pip install 'soundscape[{extra}]' (or SOUNDSCAPE_EXTRAS=dev,train "
                             "bash infra/setup.sh)")


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


@contextlib.contextmanager
def database_errors() -> Iterator[None]:
    """A database that cannot be reached is one clear message, not a traceback."""
    import psycopg
    import sqlalchemy.exc

    try:
        yield
    except (psycopg.OperationalError, sqlalchemy.exc.OperationalError) as exc:
        first = (str(getattr(exc, "orig", None) or exc).strip().splitlines() or ["?"])[0]
        raise ServiceError(
            f"cannot reach the database: {first}",
            hint="is it running? `soundscape infra status`; or set SOUNDSCAPE_POSTGRES__URL",
        ) from None
