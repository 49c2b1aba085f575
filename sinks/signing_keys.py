"""The stations' and archives' public signing keys, in the results database's
`signing_keys` table: registered by `stations add` (and `keys archive`), marked by
`stations revoke`, read by workers to check chunk signatures (soundscape.chunk_signing).

Workers read the whole table at start (a worker that cannot read it does not start:
checking signatures against nothing would let every forgery through) and again every
`intake.keys_ttl_s`; a failed refresh keeps the keys last read, so a database outage
does not stop scoring, and a revocation takes effect within one ttl.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg

from soundscape.chunk_signing import SignerKey, public_key_from_text
from soundscape.errors import ServiceError
from soundscape.logs import get_logger
from soundscape.settings import Settings
from soundscape.sinks.connection import connect, connect_to_table

log = get_logger(__name__)


def _registry(settings: Settings) -> contextlib.AbstractContextManager[psycopg.Connection[Any]]:
    return connect_to_table(settings, "signing_keys table", application_name="soundscape-keys")


def register_key(settings: Settings, signer: str, public_key: str) -> None:
    """Add or replace a signer's key (a replaced key is in force again: not revoked)."""
    public_key_from_text(public_key)  # refuse garbage before it is stored
    with _registry(settings) as conn:
        conn.execute(
            "INSERT INTO signing_keys (signer, public_key) VALUES (%s, %s) "
            "ON CONFLICT (signer) DO UPDATE SET public_key = EXCLUDED.public_key, "
            "added_at = now(), revoked_at = NULL", (signer, public_key))


def revoke_key(settings: Settings, signer: str) -> bool:
    """Mark the signer's key revoked; False when it had none (or was revoked already)."""
    with _registry(settings) as conn:
        done = conn.execute("UPDATE signing_keys SET revoked_at = now() "
                            "WHERE signer = %s AND revoked_at IS NULL", (signer,))
        return done.rowcount > 0


class DatabaseSigningKeys:
    def __init__(self, settings: Settings, ttl_s: float, startup_wait_s: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.ttl_s = ttl_s
        self.startup_wait_s = startup_wait_s
        self._clock = clock
        self._lock = threading.Lock()
        self._keys = self._read_or_fail()
        self._read_at = clock()

    def lookup(self, signer: str) -> SignerKey | None:
        with self._lock:
            if self._clock() - self._read_at >= self.ttl_s:
                self._read_at = self._clock()
                try:
                    self._keys = self._read()
                except (psycopg.Error, ServiceError, OSError) as exc:
                    log.warning("signing keys unreadable; the last read are used",
                                error=str(exc).splitlines()[0] if str(exc) else repr(exc),
                                keys=len(self._keys), retry_in_s=self.ttl_s)
            return self._keys.get(signer)

    def __len__(self) -> int:
        return len(self._keys)

    def _read_or_fail(self) -> dict[str, SignerKey]:
        """The first read waits up to `startup_wait_s` for a database still starting
        (services started together), then refuses to go on without the keys."""
        deadline = self._clock() + self.startup_wait_s
        while True:
            try:
                return self._read()
            except (psycopg.OperationalError, OSError) as exc:  # not up yet: wait
                if self._clock() >= deadline:
                    raise self._unreadable(exc) from None
                time.sleep(1.0)
            except (psycopg.Error, ServiceError) as exc:  # misconfigured: say so now
                raise self._unreadable(exc) from None

    @staticmethod
    def _unreadable(exc: Exception) -> ServiceError:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return ServiceError(
            f"cannot read the signing keys: {first}",
            hint="the worker checks chunk signatures against the results database: reach "
                 "it (SOUNDSCAPE_POSTGRES__URL, `soundscape db upgrade`), or set "
                 "SOUNDSCAPE_INTAKE__SIGNATURES=off")

    def _read(self) -> dict[str, SignerKey]:
        with connect(self.settings, application_name="soundscape-keys",
                     connect_timeout_s=3) as conn:
            try:
                rows = conn.execute(
                    "SELECT signer, public_key, revoked_at IS NOT NULL FROM signing_keys"
                ).fetchall()
            except psycopg.errors.UndefinedTable:
                # Not migrated yet (the sink migrates at its start): no key was ever
                # registered here, so there is none to check against.
                log.warning("no signing_keys table yet: no station has a registered key")
                return {}
        keys = {}
        for signer, public_key, revoked in rows:
            try:
                keys[signer] = SignerKey(signer, public_key_from_text(public_key), revoked)
            except ValueError:
                log.error("a stored signing key is unusable; its chunks are refused",
                          signer=signer)
        return keys


def list_keys(settings: Settings) -> list[dict[str, Any]]:
    with _registry(settings) as conn:
        rows = conn.execute("SELECT signer, public_key, added_at, revoked_at FROM signing_keys "
                            "ORDER BY signer").fetchall()
    return [{"signer": r[0], "public_key": r[1], "added_at": r[2], "revoked_at": r[3]}
            for r in rows]
