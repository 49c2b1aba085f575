"""The web app's pure parts: page cursors, sessions and CSRF tokens, accounts' rules,
spectrograms."""

from __future__ import annotations

import struct
import uuid
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from soundscape.web import accounts
from soundscape.web.queries import Cursor
from soundscape.web.spectrogram import spectrogram_png


def test_a_cursor_survives_its_round_trip_and_garbage_is_refused() -> None:
    cursor = Cursor(datetime(2026, 5, 1, 6, 0, 10, tzinfo=UTC), uuid.uuid4(), "Parus major|x")
    assert Cursor.decode(cursor.encode()) == cursor
    for bad in ("", "garbage", "bm90IGEgY3Vyc29y"):
        with pytest.raises(ValueError, match="cursor"):
            Cursor.decode(bad)


def test_sessions_are_signed_expire_and_cannot_be_forged(tmp_path: Path) -> None:
    secret = accounts.load_secret(tmp_path / "web" / "secret.key")
    assert (tmp_path / "web" / "secret.key").stat().st_mode & 0o777 == 0o600
    assert accounts.load_secret(tmp_path / "web" / "secret.key") == secret  # made once
    token = accounts.session_token(secret, accounts.User("ada", "reviewer"), hours=1)
    assert accounts.session_user(secret, token) == "ada"
    _, signature = token.split(".")
    other_payload = accounts.session_token(secret, accounts.User("eve", "admin"), 1).split(".")[0]
    assert accounts.session_user(secret, f"{other_payload}.{signature}") is None
    assert accounts.session_user(b"another secret", token) is None
    assert accounts.session_user(secret, None) is None
    assert accounts.session_user(secret, "a.b.c") is None
    expired = accounts.session_token(secret, accounts.User("ada", "reviewer"), hours=-1)
    assert accounts.session_user(secret, expired) is None

    csrf = accounts.csrf_token(secret, token)
    assert accounts.csrf_ok(secret, token, csrf)
    altered = csrf[:-1] + ("A" if csrf[-1] != "A" else "B")
    assert not accounts.csrf_ok(secret, token, altered)
    assert not accounts.csrf_ok(secret, None, csrf)
    other = accounts.session_token(secret, accounts.User("bob", "reviewer"), hours=1)
    assert not accounts.csrf_ok(secret, other, csrf)  # bound to its session


def test_accounts_need_a_plain_name_a_known_role_and_a_long_password() -> None:
    accounts.check_new_account("ada.l@example", "x" * 10, "reviewer")
    for name, password, role in (("bad name", "x" * 10, "reviewer"),
                                 ("ada", "short", "reviewer"),
                                 ("ada", "x" * 10, "root"), ("", "x" * 10, "admin")):
        with pytest.raises(ValueError):
            accounts.check_new_account(name, password, role)


def test_a_spectrogram_is_a_png_of_the_documented_size() -> None:
    rng = np.random.default_rng(1)
    png = spectrogram_png(rng.normal(0, 0.1, 32_000 * 10).astype(np.float32), 32_000,
                          window=(2.0, 3.5), title="Parus major")
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png[16:24])
    assert (width, height) == (1000, 300)
    short = spectrogram_png(np.zeros((100, 2), np.float32), 48_000)  # shorter than a frame
    assert short[:4] == b"\x89PNG"


def test_uploads_split_into_10_s_chunks_with_a_padded_tail(tmp_path: Path) -> None:
    import io

    from soundscape.web.classify import (
        UploadError,
        decode_upload,
        forget_old,
        receive,
        split,
        upload_chunk,
    )

    rate = 32_000
    assert split(np.ones(rate * 25, np.float32), rate, rate).shape == (3, rate * 10)
    assert split(np.ones(rate * 20 + rate // 2, np.float32), rate, rate).shape == (2, rate * 10)
    assert split(np.ones(rate // 2, np.float32), rate, rate).shape == (1, rate * 10)  # all there is
    padded = split(np.ones(rate * 15, np.float32), rate, rate)
    assert padded[1, : rate * 5].min() == 1.0 and padded[1, rate * 5:].max() == 0.0
    assert split(np.ones(48_000 * 10, np.float32), 48_000, rate).shape == (1, rate * 10)

    with pytest.raises(UploadError) as too_big:
        receive(io.BytesIO(b"x" * 5000), tmp_path / "big", limit=4096, piece=1024)
    assert too_big.value.status == 413
    assert receive(io.BytesIO(b"x" * 4096), tmp_path / "fits", limit=4096) == 4096
    (tmp_path / "noise.txt").write_bytes(b"not audio" * 100)
    with pytest.raises(UploadError) as not_audio:
        decode_upload(tmp_path / "noise.txt", 600)
    assert not_audio.value.status == 415
    for bad in ("../../etc/passwd", "abc", "0123456789abcdeg"):
        with pytest.raises(FileNotFoundError):
            upload_chunk(tmp_path, bad, 0)
    assert forget_old(tmp_path / "absent") == 0
