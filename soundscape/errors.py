"""Errors meant for people: one message saying what went wrong and what to do."""

from __future__ import annotations


class UserError(Exception):
    """An expected failure (bad input, missing tool, taken port) with a remedy.

    The CLI prints `message` and `hint` and exits with `exit_code`, without a traceback.
    """

    exit_code = 2

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}\n  hint: {self.hint}" if self.hint else self.message


class ServiceError(UserError):
    """A service (Kafka, PostgreSQL) could not be fetched, started, stopped or reached."""

    exit_code = 3
