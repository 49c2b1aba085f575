"""Who may review and upload: accounts (argon2id hashes in `web_users`), signed session
cookies, and CSRF tokens bound to the session.

A session is `payload.signature`: the payload (user, role, expiry) in base64, signed with
HMAC-SHA256 under the app's secret (`<state_dir>/web/secret.key`, 0600, made once). No
session is stored server-side; logging out drops the cookie, and a password change or a
disabled account is seen at the next request (the user is looked up each time).
A form's CSRF token is an HMAC of the session under the same secret: a page of another
site can make the browser send the cookie, never read the token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import psycopg
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

Role = Literal["reviewer", "admin"]
ROLES: tuple[str, ...] = ("reviewer", "admin")
USERNAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
MIN_PASSWORD = 10

_hasher = PasswordHasher()
#: Verified against when the user does not exist, so timing does not tell who does.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


@dataclass(frozen=True)
class User:
    name: str
    role: Role


def load_secret(path: Path) -> bytes:
    """The signing secret, made (0600, before a byte is written) on first use."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.parent.chmod(0o700)
        handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(handle, secrets.token_bytes(32))
        finally:
            os.close(handle)
    return path.read_bytes()


def check_new_account(name: str, password: str, role: str) -> None:
    if not USERNAME_RE.match(name):
        raise ValueError(f"username {name!r}: letters, digits and _.@- only, at most 64")
    if role not in ROLES:
        raise ValueError(f"role {role!r}: one of {', '.join(ROLES)}")
    if len(password) < MIN_PASSWORD:
        raise ValueError(f"the password needs at least {MIN_PASSWORD} characters")


def add_user(conn: psycopg.Connection[Any], name: str, password: str, role: str,
             replace: bool = False) -> bool:
    """Create the account (or, with replace, set its password and role); True if new."""
    check_new_account(name, password, role)
    digest = _hasher.hash(password)
    with conn.transaction():
        exists = conn.execute("SELECT 1 FROM web_users WHERE username = %s", (name,)).fetchone()
        if exists and not replace:
            raise ValueError(f"user {name!r} exists (--replace sets a new password)")
        conn.execute(
            "INSERT INTO web_users (username, password_hash, role) VALUES (%s, %s, %s)"
            " ON CONFLICT (username) DO UPDATE SET password_hash = EXCLUDED.password_hash,"
            " role = EXCLUDED.role, disabled_at = NULL", (name, digest, role))
    return exists is None


def authenticate(conn: psycopg.Connection[Any], name: str, password: str) -> User | None:
    row = conn.execute("SELECT password_hash, role FROM web_users WHERE username = %s"
                       " AND disabled_at IS NULL", (name,)).fetchone()
    try:
        _hasher.verify(row[0] if row else _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        return None
    return User(name, row[1]) if row else None


def current_user(conn: psycopg.Connection[Any], name: str) -> User | None:
    row = conn.execute("SELECT role FROM web_users WHERE username = %s"
                       " AND disabled_at IS NULL", (name,)).fetchone()
    return User(name, row[0]) if row else None


# ---- sessions and CSRF ---------------------------------------------------------------------
def _sign(secret: bytes, payload: bytes) -> str:
    return base64.urlsafe_b64encode(hmac.new(secret, payload, hashlib.sha256).digest()
                                    ).decode().rstrip("=")


def session_token(secret: bytes, user: User, hours: float) -> str:
    payload = base64.urlsafe_b64encode(json.dumps(
        {"u": user.name, "r": user.role, "exp": int(time.time() + hours * 3600),
         "n": secrets.token_urlsafe(8)}).encode()).decode().rstrip("=")
    return f"{payload}.{_sign(secret, payload.encode())}"


def session_user(secret: bytes, token: str | None) -> str | None:
    """The user a valid, unexpired session names; None for anything else."""
    if not token or token.count(".") != 1:
        return None
    payload, signature = token.split(".")
    if not hmac.compare_digest(signature, _sign(secret, payload.encode())):
        return None
    try:
        data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except ValueError:
        return None
    if not isinstance(data, dict) or int(data.get("exp", 0)) < time.time():
        return None
    user = data.get("u")
    return user if isinstance(user, str) else None


def new_nonce() -> str:
    """A login form's own random value (its CSRF token is bound to it, before a session)."""
    return secrets.token_urlsafe(16)


def csrf_token(secret: bytes, bound_to: str) -> str:
    return _sign(secret, b"csrf:" + bound_to.encode())


def csrf_ok(secret: bytes, bound_to: str | None, token: str | None) -> bool:
    return bool(bound_to and token) and hmac.compare_digest(
        str(token), csrf_token(secret, str(bound_to)))
