"""Dead-letter copies that always fit: the shared rules of the worker's and the sink's DLQ.

A message is copied to its dead-letter topic with its key, value and headers, plus
`dlq_*` headers saying why and where from. Two things must never stop that copy:
- size: a message just under its topic's limit plus the added headers must still be
  accepted, so dead-letter topics get `DLQ_HEADROOM_BYTES` more than their source
  topics (`soundscape infra topics` sets it), and a copy that would still not fit (a
  topic configured by hand) keeps its headers and drops its value, saying so;
- forgery: `dlq_*` headers are the reader's only account of why a message was refused,
  so a producer's own `dlq_*` headers are dropped from the copy, never passed on.
"""

from __future__ import annotations

from collections.abc import Iterable

#: Names reserved for the reasons a dead-letter copy carries.
DLQ_HEADER_PREFIX = "dlq_"
#: Extra room a dead-letter topic has over its source topic, for the added headers.
DLQ_HEADROOM_BYTES = 64 * 1024
#: The longest detail text a copy carries (UTF-8 bytes).
MAX_DETAIL_BYTES = 2000
#: Room left for Kafka's record and batch framing when judging whether a copy fits.
_FRAMING_BYTES = 1024

Header = tuple[str, bytes]


def carried_headers(original: Iterable[tuple[str, bytes | str | None]] | None) -> list[Header]:
    """The original headers, less any a producer named `dlq_*`."""
    carried: list[Header] = []
    for name, value in original or ():
        if str(name).startswith(DLQ_HEADER_PREFIX):
            continue
        carried.append((name, value if isinstance(value, bytes) else (value or "").encode()))
    return carried


def record_bytes(key: bytes | None, value: bytes | None, headers: list[Header]) -> int:
    return len(key or b"") + len(value or b"") + sum(len(k.encode()) + len(v) for k, v in headers)


def fit_copy(
    key: bytes | None, value: bytes | None, headers: list[Header], limit: int
) -> tuple[bytes | None, list[Header]]:
    """The value and headers to send: as they are when they fit under `limit`, else
    without the value and with `dlq_value_omitted` = its size (the source topic still
    holds it for its retention, at the offset `dlq_source*` names)."""
    if record_bytes(key, value, headers) + _FRAMING_BYTES <= limit:
        return value, headers
    return None, headers + [("dlq_value_omitted", str(len(value or b"")).encode())]


def detail_bytes(detail: str) -> bytes:
    return detail.encode("utf-8", "replace")[:MAX_DETAIL_BYTES]
