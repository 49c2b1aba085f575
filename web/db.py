"""A few PostgreSQL connections as the web role, reused across requests (a SCRAM login
costs more than most of the app's queries)."""

from __future__ import annotations

import contextlib
import queue
from collections.abc import Iterator
from typing import Any

import psycopg


class ConnectionPool:
    def __init__(self, url: str, size: int = 4, connect_timeout_s: int = 5,
                 schema: str | None = None) -> None:
        self._url, self._timeout = url, connect_timeout_s
        self._options = "-c timezone=UTC" + (f" -c search_path={schema}" if schema else "")
        self._idle: queue.LifoQueue[psycopg.Connection[Any]] = queue.LifoQueue(maxsize=size)

    @contextlib.contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        """An autocommit connection (UTC session); a broken one is dropped, not reused."""
        try:
            conn = self._idle.get_nowait()
        except queue.Empty:
            conn = psycopg.connect(self._url, autocommit=True, connect_timeout=self._timeout,
                                   options=self._options, application_name="soundscape-web")
        try:
            yield conn
        except BaseException:
            if conn.broken or conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                conn.close()
            else:
                self._put(conn)
            raise
        else:
            self._put(conn)

    def _put(self, conn: psycopg.Connection[Any]) -> None:
        if conn.closed:
            return
        try:
            self._idle.put_nowait(conn)
        except queue.Full:
            conn.close()

    def close(self) -> None:
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                return
