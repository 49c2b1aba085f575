"""`soundscape web`: the web app (listen, review, the JSON API), and its accounts."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from soundscape.cli_context import current_settings, database_errors, echo_json
from soundscape.cli_context import need_module


@click.group("web", invoke_without_command=True)
@click.option("--host", default=None, help="Address to listen on [SOUNDSCAPE_WEB__HOST, "
              "127.0.0.1]; 0.0.0.0 lets other machines in (put TLS in front).")
@click.option("--port", type=int, default=None, help="Port [SOUNDSCAPE_WEB__PORT, 8080].")
@click.option("--bundle", type=click.Path(path_type=Path), default=None,
              help="Bundle that scores uploads (/api/v1/classify) [the worker's: "
                   "SOUNDSCAPE_WORKER__BUNDLE, else the demo bundle]; loaded on first upload.")
@click.pass_context
def web(ctx: click.Context, host: str | None, port: int | None, bundle: Path | None) -> None:
    """The web app: stations, detections with their spectrograms and audio, reviews
    (confirm, reject, relabel), species pages and a JSON API (/docs). Reads the results
    database as the web role; runs until Ctrl-C or SIGTERM.

    Reviewing needs an account: `soundscape web user add NAME --role reviewer`."""
    if ctx.invoked_subcommand is not None:
        return
    need_module("fastapi", "web")
    import uvicorn

    from soundscape.app.web_classifier import ScorerClassifier
    from soundscape.web.app import create_app

    settings = current_settings()
    host = host or settings.web.host
    port = settings.web.port if port is None else port
    with database_errors():
        app = create_app(settings, ScorerClassifier(settings, bundle))
    click.echo(f"Soundscape web app on http://{host}:{port}/ (API docs at /docs)", err=True)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)


@web.group("user")
def user() -> None:
    """Accounts that may review and upload (argon2id hashes in web_users)."""


@user.command("add")
@click.argument("name")
@click.option("--role", type=click.Choice(["reviewer", "admin"]), default="reviewer",
              show_default=True)
@click.option("--replace", is_flag=True, help="The user exists: set a new password and role.")
@click.option("--password-stdin", is_flag=True,
              help="Read the password from standard input (scripts); otherwise prompted, or "
                   "SOUNDSCAPE_WEB_PASSWORD.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable.")
def user_add(name: str, role: str, replace: bool, password_stdin: bool, as_json: bool) -> None:
    """Create account NAME (at least 10 characters of password). Runs as the database's
    owner role, like `db upgrade`: the web app itself cannot create accounts."""
    need_module("argon2", "web")
    from soundscape.database import database_url
    from soundscape.errors import UserError
    from soundscape.web.accounts import add_user

    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    elif os.environ.get("SOUNDSCAPE_WEB_PASSWORD"):
        password = os.environ["SOUNDSCAPE_WEB_PASSWORD"]
    else:
        password = click.prompt("password", hide_input=True, confirmation_prompt=True)
    import psycopg

    settings = current_settings()
    with database_errors(), psycopg.connect(database_url(settings, "owner"),
                                            autocommit=True) as conn:
        try:
            created = add_user(conn, name, password, role, replace=replace)
        except ValueError as exc:
            raise UserError(str(exc)) from None
        except psycopg.errors.UndefinedTable:
            raise UserError("the results database has no web_users table yet",
                            hint="run `soundscape db upgrade`") from None
    if as_json:
        echo_json({"user": name, "role": role, "created": created})
        return
    click.echo(f"user {name} ({role}) {'created' if created else 'updated'}")
