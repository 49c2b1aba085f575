"""Dead-letter copies: a producer cannot forge the reasons, and a copy always fits."""

from __future__ import annotations

from soundscape.dead_letter import (
    DLQ_HEADROOM_BYTES,
    MAX_DETAIL_BYTES,
    carried_headers,
    detail_bytes,
    fit_copy,
    record_bytes,
)


def test_forged_dlq_headers_are_dropped_and_others_kept_as_bytes() -> None:
    original = [("station_id", b"pi-1"), ("dlq_reason", b"all fine"), ("note", "text"),
                ("dlq_source_topic", b"x"), ("empty", None)]
    assert carried_headers(original) == [("station_id", b"pi-1"), ("note", b"text"),
                                         ("empty", b"")]
    assert carried_headers(None) == []


def test_a_copy_that_fits_is_sent_whole() -> None:
    headers = [("dlq_reason", b"bad_headers")]
    value, out = fit_copy(b"k", b"v" * 1000, headers, limit=1_000_000)
    assert value == b"v" * 1000 and out == headers


def test_a_copy_over_the_limit_drops_its_value_and_says_so() -> None:
    headers = [("dlq_reason", b"wrong_length")]
    value, out = fit_copy(b"k", b"v" * 5000, headers, limit=4096)
    assert value is None
    assert out == headers + [("dlq_value_omitted", b"5000")]
    assert record_bytes(b"k", value, out) < 4096


def test_headroom_covers_the_largest_detail() -> None:
    assert DLQ_HEADROOM_BYTES > MAX_DETAIL_BYTES * 4


def test_details_are_cut_to_the_limit_even_mid_character() -> None:
    cut = detail_bytes("é" * 5000)
    assert len(cut) == MAX_DETAIL_BYTES
    assert cut.decode("utf-8", "replace").startswith("é")
    assert detail_bytes("short") == b"short"
