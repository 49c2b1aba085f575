"""Chunk signatures: who may sign what, and every way a signature can be wrong."""

from __future__ import annotations

import base64
import dataclasses
import time

import pytest

from soundscape.chunk_signing import (
    SIGNATURE_HEADER,
    SIGNER_HEADER,
    ChunkSigner,
    SignerKey,
    new_private_key_text,
    private_key_from_text,
    public_key_from_text,
    public_key_text,
    verify,
)
from soundscape.envelope import ChunkEnvelope

NS = 1_000_000_000


def _envelope(station: str = "pi-a", source: str = "live") -> ChunkEnvelope:
    start = 1_767_225_600 * NS
    return ChunkEnvelope.for_payload(b"flac bytes", station_id=station, chunk_start=start,
                                     sample_rate=32000, seq=7, captured_at=start + 10 * NS,
                                     source=source)


@pytest.fixture
def keys() -> dict[str, tuple[ChunkSigner, SignerKey]]:
    made = {}
    for signer in ("pi-a", "pi-b", "archive:field-2024", "pi-gone"):
        private = private_key_from_text(new_private_key_text())
        made[signer] = (ChunkSigner(private, signer),
                        SignerKey(signer, private.public_key(), revoked=signer == "pi-gone"))
    return made


def _lookup(keys: dict) -> object:
    return lambda signer: keys[signer][1] if signer in keys else None


def test_a_station_signs_its_own_chunks(keys: dict) -> None:
    signed = keys["pi-a"][0].sign(_envelope("pi-a"))
    assert dict(signed.extra)[SIGNER_HEADER] == b"pi-a"
    assert verify(signed, _lookup(keys), require=True) is None
    # It survives the trip through Kafka headers, and published_at is not signed.
    again = ChunkEnvelope.from_headers(signed.with_published_at(time.time_ns()).to_headers(),
                                       None, b"pi-a")
    assert verify(again, _lookup(keys), require=True) is None


def test_a_station_cannot_sign_for_another(keys: dict) -> None:
    forged = keys["pi-a"][0].sign(_envelope("pi-b"))
    assert verify(forged, _lookup(keys), require=False)[0] == "wrong_signer"
    # Nor by naming the other station as signer: its key does not verify.
    claimed = ChunkSigner(keys["pi-a"][0].key, "pi-b").sign(_envelope("pi-b"))
    assert verify(claimed, _lookup(keys), require=False)[0] == "bad_signature"


@pytest.mark.parametrize("field,value", [("sha256", "0" * 64), ("chunk_start", 1_767_225_610 * NS),
                                         ("seq", 8), ("source", "replay"), ("gap_ns", 5)])
def test_any_signed_field_changed_breaks_the_signature(keys: dict, field: str,
                                                       value: object) -> None:
    signed = keys["pi-a"][0].sign(_envelope("pi-a"))
    tampered = dataclasses.replace(signed, **{field: value})
    assert verify(tampered, _lookup(keys), require=False)[0] == "bad_signature"


def test_unsigned_revoked_unknown_and_garbage(keys: dict) -> None:
    lookup = _lookup(keys)
    assert verify(_envelope("pi-a"), lookup, require=False)[0] == "unsigned"  # has a key
    assert verify(_envelope("pi-new"), lookup, require=False) is None  # keyless: registered
    assert verify(_envelope("pi-new"), lookup, require=True)[0] == "unsigned"
    assert verify(keys["pi-gone"][0].sign(_envelope("pi-gone")), lookup, False)[0] == \
        "revoked_signer"
    assert verify(_envelope("pi-gone"), lookup, False)[0] == "revoked_signer"
    stranger = ChunkSigner(private_key_from_text(new_private_key_text()), "pi-x")
    assert verify(stranger.sign(_envelope("pi-x")), lookup, False)[0] == "unknown_signer"
    signed = keys["pi-a"][0].sign(_envelope("pi-a"))
    for bad in (b"not base64!", base64.b64encode(b"short"), b""):
        broken = dataclasses.replace(signed, extra=tuple(
            (k, bad if k == SIGNATURE_HEADER else v) for k, v in signed.extra))
        assert verify(broken, lookup, False)[0] == "bad_signature", bad


def test_archive_keys_sign_replays_only(keys: dict) -> None:
    archive = keys["archive:field-2024"][0]
    assert verify(archive.sign(_envelope("pi-a", "replay")), _lookup(keys), True) is None
    assert verify(archive.sign(_envelope("pi-a", "live")), _lookup(keys), True)[0] == \
        "wrong_signer"


def test_keys_as_text_round_trip_and_refuse_garbage() -> None:
    text = new_private_key_text()
    private = private_key_from_text(text)
    assert public_key_text(public_key_from_text(public_key_text(private))) == \
        public_key_text(private)
    for bad in ("", "abc", base64.b64encode(b"x" * 31).decode()):
        with pytest.raises(ValueError):
            private_key_from_text(bad)
        with pytest.raises(ValueError):
            public_key_from_text(bad)


def test_signing_and_checking_cost_well_under_a_millisecond(keys: dict) -> None:
    """Printed, not asserted on time: the figure for docs/benchmarks.md."""
    signer, key = keys["pi-a"]
    envelope = _envelope("pi-a")
    rounds = 500
    started = time.perf_counter()
    for _ in range(rounds):
        signed = signer.sign(envelope)
    signing = (time.perf_counter() - started) / rounds
    started = time.perf_counter()
    for _ in range(rounds):
        assert verify(signed, lambda _s: key, True) is None
    checking = (time.perf_counter() - started) / rounds
    print(f"\nsign {signing * 1e6:.0f} us/chunk, verify {checking * 1e6:.0f} us/chunk")


# ---- edge results: a station signs the results it scored itself ------------------------
def test_a_station_signs_its_own_results_and_nothing_else_passes(keys: dict) -> None:
    from soundscape.chunk_signing import result_headers, result_signed_bytes, signed_bytes, verify_result

    lookup = _lookup(keys)
    value = b'{"station_id":"pi-a","top_k":[]}'
    headers = result_headers(keys["pi-a"][0], value)
    assert verify_result(headers, value, "pi-a", lookup, require=True) is None
    assert verify_result(headers, value + b" ", "pi-a", lookup, False)[0] == "bad_signature"
    assert verify_result(headers, value, "pi-b", lookup, False)[0] == "wrong_signer"
    assert verify_result([], value, "pi-a", lookup, False)[0] == "unsigned"  # pi-a has a key
    assert verify_result([], value, "pi-new", lookup, False) is None  # no key, not required
    assert verify_result([], value, "pi-new", lookup, True)[0] == "unsigned"
    assert verify_result(None, value, "pi-gone", lookup, False)[0] == "revoked_signer"
    archive = result_headers(keys["archive:field-2024"][0], value)
    assert verify_result(archive, value, "pi-a", lookup, False)[0] == "wrong_signer"
    assert verify_result(headers + headers, value, "pi-a", lookup, False)[0] == "bad_signature"
    assert result_headers(None, value) == []
    # a chunk's signature can never pass for a result's, nor the other way round
    envelope = keys["pi-a"][0].sign(_envelope("pi-a"))
    chunk_signature = dict(envelope.extra)[SIGNATURE_HEADER]
    chunk_bytes = signed_bytes(envelope, "pi-a")
    assert verify_result([(SIGNER_HEADER, b"pi-a"), (SIGNATURE_HEADER, chunk_signature)],
                         chunk_bytes, "pi-a", lookup, False)[0] == "bad_signature"
    assert not result_signed_bytes(value, "pi-a").startswith(chunk_bytes[:20])
