"""What a station remembers across restarts, and how it refuses a state not its own."""

from __future__ import annotations

from pathlib import Path

import pytest

from soundscape.errors import UserError
from soundscape.producers.station_state import StationState


def test_a_new_station_starts_at_seq_zero(tmp_path: Path) -> None:
    state = StationState.load(tmp_path / "state.json", "pi-1")
    assert (state.station_id, state.next_seq, state.last_chunk_end_ns) == ("pi-1", 0, None)


def test_saved_state_is_loaded_back_and_written_atomically(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    StationState("pi-1", next_seq=42, last_chunk_end_ns=1_700_000_000_000_000_000).save(path)
    assert not path.with_suffix(".tmp").exists()
    state = StationState.load(path, "pi-1")
    assert (state.next_seq, state.last_chunk_end_ns) == (42, 1_700_000_000_000_000_000)
    StationState("pi-1", next_seq=43).save(path)
    assert StationState.load(path, "pi-1").next_seq == 43


@pytest.mark.parametrize("content", [b"", b"{", b"[]", b'{"station_id": "pi-1"}',
                                     b'{"station_id": "pi-1", "next_seq": "x"}', b"\xff\xfe"])
def test_an_unreadable_state_says_how_to_recover(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "state.json"
    path.write_bytes(content)
    with pytest.raises(UserError, match="unreadable") as caught:
        StationState.load(path, "pi-1")
    assert "move it aside" in (caught.value.hint or "")


def test_another_stations_state_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    StationState("pi-2", next_seq=5).save(path)
    with pytest.raises(UserError, match="belongs to station 'pi-2'"):
        StationState.load(path, "pi-1")
