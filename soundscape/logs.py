"""Structured logs: JSON lines for services and files, readable lines on a terminal.

Everything a process logs goes through one renderer: structlog's own loggers, and the
standard-library records of libraries (librdkafka through confluent-kafka's `logger`
hook, faust, aiokafka, alembic), so a service's stderr is JSON lines only. The Kafka
clients repeat themselves during an outage (librdkafka a `Connect ... failed` line per
broker per try; aiokafka, in the drift app, `Unable connect to node` ten times a
second); their lines are rate-limited per kind, and the line that ends a quiet spell
says how many were held back.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
import time
from typing import Any

import structlog

#: The logger confluent-kafka clients log through (kafka_clients.common_config).
LIBRDKAFKA_LOGGER = "soundscape.librdkafka"
_HANDLER_MARK = "_soundscape_handler"
#: Libraries whose records the handler rate-limits (librdkafka's logger has its own).
_CHATTY_LIBRARIES = ("aiokafka", "faust", "mode")
_LIBRDKAFKA_LINE = re.compile(r"^(\S+) \[([^\]]*)\] (.*)$", re.DOTALL)


class RepeatLimiter(logging.Filter):
    """Let through the first record of each kind per `window_s` (kind: level and the
    message with its numbers blanked), and count the rest; the next one let through
    carries `suppressed` = how many were held back. With `libraries`, only records of
    those loggers (and their children) are limited; the rest pass."""

    def __init__(self, window_s: float = 30.0, clock: Any = time.monotonic,
                 libraries: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.window_s = window_s
        self._libraries = libraries
        self._prefixes = tuple(f"{name}." for name in libraries)
        self._clock = clock
        self._lock = threading.Lock()
        self._kinds: dict[tuple[int, str], tuple[float, int]] = {}  # kind -> (shown at, held)

    def filter(self, record: logging.LogRecord) -> bool:
        if self._libraries and not record.name.startswith(self._prefixes) \
                and record.name not in self._libraries:
            return True
        kind = (record.levelno, re.sub(r"\d+", "#", _message(record))[:300])
        now = self._clock()
        with self._lock:
            shown_at, held = self._kinds.get(kind, (None, 0))
            if shown_at is not None and now - shown_at < self.window_s:
                self._kinds[kind] = (shown_at, held + 1)
                return False
            self._kinds[kind] = (now, 0)
            if len(self._kinds) > 1000:  # bounded: forget the oldest kinds
                for old in sorted(self._kinds, key=lambda k: self._kinds[k][0])[:500]:
                    del self._kinds[old]
        if held:
            record.suppressed = held
        return True


def _message(record: logging.LogRecord) -> str:
    try:
        return record.getMessage()
    except (TypeError, ValueError):
        return str(record.msg)


def _foreign_fields(_logger: Any, _name: str, event: dict[str, Any]) -> dict[str, Any]:
    """A standard-library record's useful parts as fields: librdkafka's facility and
    client apart from its text, and the limiter's count."""
    record = event.get("_record")
    if record is None:
        return event
    if record.name == LIBRDKAFKA_LOGGER:  # "FAC [client] text" (ProcessorFormatter has
        parts = _LIBRDKAFKA_LINE.match(str(event.get("event", "")))  # cleared the args)
        if parts:
            event["facility"], event["client"], event["event"] = parts.groups()
    suppressed = getattr(record, "suppressed", None)
    if suppressed:
        event["suppressed_similar"] = suppressed
    return event


def configure_logging(level: str = "info", fmt: str = "auto") -> None:
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    numeric = getattr(logging, level.upper())
    stamp = structlog.processors.TimeStamper(fmt="iso", utc=True)
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.add_logger_name, structlog.processors.add_log_level,
                           stamp, _foreign_fields],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
    root = logging.getLogger()
    ours = [h for h in root.handlers if getattr(h, _HANDLER_MARK, False)]
    if ours:
        ours[0].setFormatter(formatter)
    elif not root.handlers:  # (a test runner's capture handlers are left as they are)
        handler = logging.StreamHandler(sys.stderr)
        setattr(handler, _HANDLER_MARK, True)
        handler.setFormatter(formatter)
        handler.addFilter(RepeatLimiter(libraries=_CHATTY_LIBRARIES))
        root.addHandler(handler)
    root.setLevel(numeric)
    # Libraries whose INFO lines ("setup plugin ...", "Context impl ...") are noise next to
    # the services' own; their warnings still show.
    for noisy in ("alembic",):
        logging.getLogger(noisy).setLevel(max(numeric, logging.WARNING))
    librdkafka = logging.getLogger(LIBRDKAFKA_LOGGER)
    if not any(isinstance(f, RepeatLimiter) for f in librdkafka.filters):
        librdkafka.addFilter(RepeatLimiter())
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            stamp,
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )


def get_logger(name: str, **context: Any) -> structlog.stdlib.BoundLogger:
    """A lazy logger: module-level loggers pick up configure_logging() called later.

    (`.bind()` on structlog's proxy would build the logger at import time, freezing the
    default configuration: console lines on stdout whatever SOUNDSCAPE_LOG_FORMAT says.)
    """
    return structlog.get_logger(name, **context)
